import { PermissionFlagsBits, type ButtonInteraction, type ChatInputCommandInteraction, type ModalSubmitInteraction } from 'discord.js';
import { checkOptions, OptionError, type ImagineOptions } from '../jobs/options.ts';
import { describeError } from '../log.ts';
import { JobDetachedError, QueueRejection, type JobHandle } from '../queue/types.ts';
import type { Admission } from '../settings/admission.ts';
import { SettingsStoreError } from '../settings/store.ts';
import type { BotContext } from './bot-context.ts';
import { JobDelivery } from './job-delivery.ts';
import { admissionRecord } from './job-record.ts';
import { answerPrivately, refusalText } from './job-messages.ts';
import { deliveryRecord, liveTarget } from './reply-target.ts';
import { isAlreadyAcknowledged } from './rest-errors.ts';

/** What posting a result needs; Send Messages because a job that outlives its interaction token goes to the channel. */
const REQUIRED_CHANNEL_PERMISSIONS = [
  ['View Channel', PermissionFlagsBits.ViewChannel],
  ['Send Messages', PermissionFlagsBits.SendMessages],
  ['Attach Files', PermissionFlagsBits.AttachFiles],
  ['Embed Links', PermissionFlagsBits.EmbedLinks],
] as const;

/** What starts a job: /imagine, a button on a result, or the Remix modal. */
type JobInteraction = ChatInputCommandInteraction | ButtonInteraction | ModalSubmitInteraction;

/**
 * Queues a job for whoever sent the interaction and hands it to a JobDelivery. Refusals (bad options, the
 * server's rules and quotas, full queue, missing permissions, shutting down) are ephemeral replies; accepted
 * jobs get a deferred public reply at once, before anything slow happens.
 */
export async function startJob(
  interaction: JobInteraction,
  requested: ImagineOptions,
  context: BotContext,
  /** Whether the user chose the number of images (else the server's default count applies). */
  { countChosen }: { countChosen: boolean },
): Promise<void> {
  const refusal = precheck(interaction, requested, context);
  if (refusal) return refuse(interaction, refusal);
  const admission = await admit(interaction, requested, countChosen, context);
  if (!admission.admitted) return refuse(interaction, admission.reason);
  const { options } = admission;

  const target = liveTarget(interaction);
  let job: JobHandle;
  try {
    job = await context.queue.enqueue(interaction.user.id, options, {
      id: interaction.id,
      delivery: { ...deliveryRecord(interaction, target), ...admissionRecord(admission.safety, admission.reservation) },
      guildId: interaction.guildId ?? undefined,
      policy: admission.policy,
      queueShare: admission.queueShare,
    });
  } catch (error) {
    await admission.giveBack();
    if (error instanceof QueueRejection && error.reason === 'duplicate') {
      context.logger.info({ interactionId: interaction.id }, 'interaction already queued by another bot process; left to it');
      return;
    }
    if (error instanceof QueueRejection) return refuse(interaction, refusalText(error.reason, error.limit));
    if (error instanceof OptionError) return refuse(interaction, `⚠️ ${error.message}`);
    throw error;
  }
  giveBackUnlessImagesMade(job, admission.giveBack, context);
  try {
    await interaction.deferReply();
  } catch (error) {
    if (isAlreadyAcknowledged(error)) {
      // discord.js sent the acknowledgement again after the answer to the first was lost: the first went through.
      interaction.deferred = true;
    } else {
      await dropUnacknowledged(job, error, context);
      return;
    }
  }
  context.logger.info({ jobId: job.id, userId: job.userId, count: options.count }, 'job queued');
  context.deliveries.track(new JobDelivery(job, target, { client: context.client, logger: context.logger, timing: context.config.timing, safety: admission.safety, safetyChecked: context.queue.safetyChecked() }));
}

/** A job that made no image counts against no quota (one that goes on without this process still counts: whoever takes it over settles it). */
export function giveBackUnlessImagesMade(job: JobHandle, giveBack: () => Promise<void>, context: Pick<BotContext, 'logger'>): void {
  job.result.catch((error: unknown) => {
    if (error instanceof JobDetachedError) return;
    giveBack().catch((failure: unknown) => context.logger.warn({ jobId: job.id, error: describeError(failure) }, 'could not give back a quota'));
  });
}

/** The user was never shown the job, so there is nothing to post: a restarted bot must not take it up either. */
async function dropUnacknowledged(job: JobHandle, error: unknown, context: BotContext): Promise<void> {
  job.cancel('user');
  await job.acknowledge?.().catch(() => undefined);
  context.logger.warn({ jobId: job.id, error: describeError(error) }, 'could not acknowledge the interaction; job dropped');
}

function precheck(interaction: JobInteraction, options: ImagineOptions, context: BotContext): string | undefined {
  if (context.isShuttingDown()) return refusalText('closed', 0);
  const missing = REQUIRED_CHANNEL_PERMISSIONS.filter(([, flag]) => interaction.appPermissions && !interaction.appPermissions.has(flag));
  if (missing.length > 0) {
    const names = missing.map(([name]) => `**${name}**`);
    const listed = names.length === 1 ? names[0] : `${names.slice(0, -1).join(', ')} and ${names.at(-1)}`;
    return `🔒 I cannot post images in this channel: I am missing ${listed}. Ask a moderator to grant ${names.length === 1 ? 'it' : 'them'}.`;
  }
  try {
    checkOptions(options);
  } catch (error) {
    if (error instanceof OptionError) return `⚠️ ${error.message}`;
    throw error;
  }
  return undefined;
}

/** The server's verdict; a store that cannot be read refuses the job (it is never taken as "no rules"). */
async function admit(
  interaction: JobInteraction,
  options: ImagineOptions,
  countChosen: boolean,
  context: BotContext,
): Promise<Admission> {
  try {
    return await context.admission.admit({
      guildId: interaction.guildId ?? undefined,
      // A modal's submission names no channel only outside one; no channel then matches the server's allowed ones.
      channelId: interaction.channelId ?? '',
      ageRestricted: isAgeRestricted(interaction),
      userId: interaction.user.id,
      roleIds: memberRoleIds(interaction),
      options,
      countChosen,
      offered: context.queue.offeredModels(),
    });
  } catch (error) {
    if (error instanceof SettingsStoreError) {
      context.logger.error({ guildId: interaction.guildId, error: error.message }, 'a server’s settings cannot be read; its jobs are refused');
      return { admitted: false, reason: '⚠️ This server’s settings cannot be read right now, so I take no jobs here. The bot’s operator can see why in its log.' };
    }
    context.logger.warn({ error: describeError(error) }, 'the settings store did not answer');
    return { admitted: false, reason: refusalText('unavailable', 0) };
  }
}

/** Whether the channel is marked age-restricted (a thread: its parent); a channel the bot cannot see counts as not. */
function isAgeRestricted(interaction: JobInteraction): boolean {
  const channel = interaction.channel;
  if (!channel || channel.isDMBased()) return false;
  if (channel.isThread()) return channel.parent?.nsfw ?? false;
  return 'nsfw' in channel && channel.nsfw;
}

function memberRoleIds(interaction: JobInteraction): readonly string[] {
  const member = interaction.member;
  if (!member) return [];
  return Array.isArray(member.roles) ? member.roles : [...member.roles.cache.keys()];
}

function refuse(interaction: JobInteraction, content: string): Promise<void> {
  return answerPrivately(interaction, content);
}
