import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Events, GatewayIntentBits, MessageFlags, Status, type Interaction } from 'discord.js';
import type { Logger } from 'pino';
import type { BotConfig } from '../config.ts';
import type { HealthStatus } from '../health/health-file.ts';
import { describeError } from '../log.ts';
import type { DeliveryRecord, JobHandle, JobQueue } from '../queue/types.ts';
import { JobAdmission } from '../settings/admission.ts';
import { BotOwners } from '../settings/owners.ts';
import { operatorLimits } from '../settings/server-policy.ts';
import type { SettingsStore } from '../settings/store.ts';
import { DeliveryRegistry, type BotContext } from './bot-context.ts';
import { handleButton, handleModalSubmit } from './buttons.ts';
import { loadCommands, type CommandModule } from './commands.ts';
import { JobDelivery } from './job-delivery.ts';
import { storedReservation, storedSafetyPolicy } from './job-record.ts';
import { giveBackUnlessImagesMade } from './start-job.ts';
import { storedTarget } from './reply-target.ts';
import { restOptions } from './rest-options.ts';

const DELIVERY_DRAIN_MS = 15_000;

export interface RunningBot {
  readonly client: Client;
  /** Refuses new jobs, cancels the waiting ones (telling their users), finishes or aborts the running one, logs out. */
  shutdown(): Promise<void>;
  /** Healthy while the gateway connection is up (every shard ready). */
  health(): HealthStatus;
}

/** What a bot process reports before startBot has returned. */
export const LOGGING_IN: HealthStatus = { healthy: false, detail: 'logging in to Discord' };

/**
 * Gateway close codes after which Discord will not take the bot back until its operator changes something, with what
 * to change. discord.js stops reconnecting after them; a process left running would answer nothing.
 */
const FATAL_CLOSE_CODES: Readonly<Record<number, string>> = {
  4004: 'Discord rejected the bot token (4004 Authentication failed): it was reset or is wrong. Set DISCORD_TOKEN to the bot’s current token.',
  4010: 'Discord refused the shard settings (4010 Invalid shard).',
  4011: 'Discord requires sharding for this bot (4011 Sharding required): it is in too many servers for one connection.',
  4012: 'Discord refused the gateway version (4012 Invalid API version): update discord.js.',
  4013: 'Discord refused the gateway intents (4013 Invalid intents).',
  4014: 'Discord refused a privileged intent (4014 Disallowed intents): enable it under Bot → Privileged Gateway Intents in the Developer Portal.',
};

export interface StartBotOptions {
  config: BotConfig;
  queue: JobQueue;
  /** Closed by shutdown(). */
  settings: SettingsStore;
  logger: Logger;
  commandsDir?: string;
  /** Called (after a fatal log line) when the gateway closed for good; a process should exit non-zero then. */
  onGatewayLost?: (code: number) => void;
}

/** Logs in at once; commands are accepted while the model loads (their jobs wait in the queue). */
export async function startBot(options: StartBotOptions): Promise<RunningBot> {
  const { config, queue, logger } = options;
  const commands = await loadCommands(options.commandsDir);
  const client = new Client({
    intents: [GatewayIntentBits.Guilds],
    rest: restOptions(config.discord),
  });
  let shuttingDown = false;
  const operator = operatorLimits(config);
  const owners = new BotOwners(config.servers.ownerIds);
  const context: BotContext = {
    client,
    config,
    queue,
    settings: options.settings,
    operator,
    owners,
    admission: new JobAdmission(options.settings, operator, owners, logger),
    logger,
    deliveries: new DeliveryRegistry(),
    isShuttingDown: () => shuttingDown,
  };

  client.on(Events.InteractionCreate, (interaction) => void dispatch(interaction, commands, context));
  client.once(Events.ClientReady, (ready) => {
    logger.info({ user: ready.user.tag, guilds: ready.guilds.cache.size }, 'logged in to Discord');
    owners.learn(applicationOwners(ready, logger));
    queue.recover?.((job, delivery) => resumeDelivery(job, delivery, ready, context));
  });
  client.on(Events.Error, (error) => logger.error({ error: describeError(error) }, 'discord.js client error'));
  client.on(Events.ShardDisconnect, (event) => {
    const fatal = FATAL_CLOSE_CODES[event.code];
    if (!fatal) return logger.warn({ code: event.code }, 'gateway disconnected');
    logger.fatal({ code: event.code }, `the Discord gateway closed for good: ${fatal}`);
    options.onGatewayLost?.(event.code);
  });
  client.on(Events.ShardReconnecting, () => logger.info('gateway reconnecting'));
  await client.login(config.discord.token);

  return {
    client,
    async shutdown() {
      if (shuttingDown) return;
      shuttingDown = true;
      logger.info('shutting down: refusing new jobs and closing the queue');
      await queue.close(config.timing.shutdownTimeoutMs);
      // The last messages get a bounded wait: a Discord outage must not keep the process alive forever.
      await Promise.race([context.deliveries.settled(), sleep(DELIVERY_DRAIN_MS)]);
      await client.destroy();
      await options.settings.close();
      logger.info('logged out of Discord');
    },
    health: () => gatewayHealth(client),
  };
}

/** The application's owner, or its team's members, may override every server's rules (as OWNER_IDS may). */
async function applicationOwners(client: Client<true>, logger: Logger): Promise<string[]> {
  try {
    const owner = (await client.application.fetch()).owner;
    if (!owner) return [];
    return 'members' in owner ? [...owner.members.keys()] : [owner.id];
  } catch (error) {
    logger.warn({ error: describeError(error) }, 'could not read the application’s owner; only OWNER_IDS can override server rules');
    return [];
  }
}

function gatewayHealth(client: Client): HealthStatus {
  const shards = [...client.ws.shards.values()];
  const down = shards.filter((shard) => shard.status !== Status.Ready);
  if (shards.length === 0 || down.length > 0) {
    const states = down.map((shard) => `shard ${shard.id} ${Status[shard.status]}`).join(', ');
    return { healthy: false, detail: `Discord gateway not connected${states ? ` (${states})` : ''}` };
  }
  // The ping is -1 until the first heartbeat has been acknowledged.
  const ping = client.ws.ping >= 0 ? ` (ping ${Math.round(client.ws.ping)} ms)` : '';
  return { healthy: true, detail: `Discord gateway connected${ping}` };
}

/** Takes up a job an earlier bot process accepted (and left, or crashed with): progress and result go to its interaction (or its channel) as before. */
function resumeDelivery(job: JobHandle, delivery: DeliveryRecord, client: Client<true>, context: BotContext): void {
  const target = storedTarget(client, delivery);
  if (!target) {
    context.logger.warn({ jobId: job.id }, 'a recovered job has no usable delivery record; it cannot be posted, so it is dropped');
    job.cancel('shutdown');
    void job.acknowledge?.().catch(() => undefined);
    return;
  }
  context.logger.info({ jobId: job.id, userId: job.userId, state: job.status().state }, 'taking over a job another bot process queued');
  const reservation = storedReservation(delivery, job.userId);
  if (reservation) giveBackUnlessImagesMade(job, () => context.admission.giveBack(reservation), context);
  const safety = storedSafetyPolicy(delivery);
  context.deliveries.track(new JobDelivery(job, target, { client, logger: context.logger, timing: context.config.timing, safety, safetyChecked: context.queue.safetyChecked() }));
}

async function dispatch(interaction: Interaction, commands: Map<string, CommandModule>, context: BotContext): Promise<void> {
  const log = context.logger.child({ interactionId: interaction.id, userId: interaction.user.id });
  try {
    if (interaction.isChatInputCommand()) {
      const command = commands.get(interaction.commandName);
      if (!command) {
        await interaction.reply({ content: `I do not know /${interaction.commandName}.`, flags: MessageFlags.Ephemeral });
        return;
      }
      await command.execute(interaction, context);
    } else if (interaction.isAutocomplete()) {
      await commands.get(interaction.commandName)?.autocomplete?.(interaction, context);
    } else if (interaction.isButton()) {
      await handleButton(interaction, context);
    } else if (interaction.isModalSubmit()) {
      await handleModalSubmit(interaction, context);
    } else if (interaction.isRepliable()) {
      await interaction.reply({ content: 'I do not handle this kind of interaction.', flags: MessageFlags.Ephemeral });
    }
  } catch (error) {
    log.error({ error: describeError(error), stack: error instanceof Error ? error.stack : undefined }, 'interaction handler failed');
    if (interaction.isRepliable() && !interaction.replied && !interaction.deferred) {
      await interaction
        .reply({ content: '⚠️ Something went wrong on my side. Please try again.', flags: MessageFlags.Ephemeral })
        .catch((replyError: unknown) => log.warn({ error: describeError(replyError) }, 'could not report the failure'));
    } else if (interaction.isRepliable()) {
      await interaction
        .followUp({ content: '⚠️ Something went wrong on my side. Please try again.', flags: MessageFlags.Ephemeral })
        .catch((replyError: unknown) => log.warn({ error: describeError(replyError) }, 'could not report the failure'));
    }
  }
}
