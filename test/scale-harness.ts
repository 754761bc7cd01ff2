import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MessageFlags } from 'discord.js';
import { Redis } from 'ioredis';
import { loadConfig } from '../src/config.ts';
import { deployCommands } from '../src/discord/deploy.ts';
import { ensureTinyModel } from '../src/tiny-model/index.ts';
import { hasImages } from './bot-harness.ts';
import { FakeDiscord, type InteractionHandle, type OptionValue, type StoredMessage } from './fake-discord/index.ts';
import { RedisServer } from './redis-server.ts';
import { entryPoint } from './entry-point.ts';

// An empty working directory, so a developer's .env cannot leak into the processes.
const cwd = mkdtempSync(join(tmpdir(), 'imagine-scale-'));

/** A `npm run bot` or `npm run worker` process with its JSON log lines. */
export interface Role {
  readonly name: string;
  readonly lines: Record<string, unknown>[];
  readonly output: () => string;
  readonly exit: Promise<number | null>;
  readonly running: boolean;
  kill(signal: NodeJS.Signals): void;
  /** Waits for a log line whose msg is `message` (and whose fields match `fields`). */
  waitForLog(message: string, fields?: Record<string, unknown>, timeoutMs?: number): Promise<Record<string, unknown>>;
  logged(message: string, fields?: Record<string, unknown>): Record<string, unknown>[];
}

/** Redis, the fake Discord and the tiny model, with helpers to start bot and worker processes against them. */
export class ScaleCluster {
  readonly roles: Role[] = [];
  private readonly commands = new Map<string, { sentAt: number; prompt: string }>();

  private constructor(
    readonly redis: RedisServer,
    readonly fake: FakeDiscord,
    private readonly environment: Record<string, string>,
  ) {}

  static async start(options: { redis?: { appendOnly?: boolean }; environment?: Record<string, string> } = {}): Promise<ScaleCluster> {
    const [redis, fake, modelDir] = await Promise.all([RedisServer.start(options.redis), FakeDiscord.start(), ensureTinyModel()]);
    const environment: Record<string, string> = {
      DISCORD_TOKEN: fake.botToken,
      DISCORD_APPLICATION_ID: fake.applicationId,
      DISCORD_GUILD_ID: fake.guildId,
      DISCORD_API_URL: fake.apiUrl,
      QUEUE_BACKEND: 'bullmq',
      REDIS_URL: redis.url,
      SD_MODEL_DIR: modelDir,
      SIZES: '64x64,256x256,512x512,768x768',
      DEFAULT_SIZE: '64x64',
      DEFAULT_STEPS: '2',
      MAX_STEPS: '150',
      PROGRESS_EDIT_INTERVAL_MS: '100',
      SHUTDOWN_TIMEOUT_MS: '200',
      STALLED_JOB_TIMEOUT_MS: '3000',
      LOG_LEVEL: 'debug',
      ...options.environment,
    };
    await deployCommands(loadConfig(environment));
    return new ScaleCluster(redis, fake, environment);
  }

  startBot(environment: Record<string, string> = {}): Role {
    return this.spawn('bot', 'src/bot-main.ts', environment);
  }

  startWorker(environment: Record<string, string> = {}): Role {
    return this.spawn('worker', 'src/worker-main.ts', environment);
  }

  /** `npm start`: with QUEUE_BACKEND=bullmq, a bot and a worker in one process. */
  startAllInOne(environment: Record<string, string> = {}): Role {
    return this.spawn('all-in-one', 'src/main.ts', environment);
  }

  /** Starts a bot and waits until it has logged in to the fake. */
  async readyBot(environment: Record<string, string> = {}): Promise<Role> {
    const bot = this.startBot(environment);
    await bot.waitForLog('logged in to Discord', {}, 60_000);
    return bot;
  }

  /** Starts workers and waits until each has loaded the model and takes jobs. */
  async readyWorkers(count: number): Promise<Role[]> {
    const workers = Array.from({ length: count }, () => this.startWorker());
    await Promise.all(workers.map((worker) => worker.waitForLog('taking jobs', {}, 60_000)));
    return workers;
  }

  imagine(username: string, options: Record<string, OptionValue>): InteractionHandle {
    const sentAt = Date.now();
    const handle = this.fake.sendCommand({ name: 'imagine', options, user: this.fake.user(username) });
    this.commands.set(handle.id, { sentAt, prompt: String(options.prompt) });
    return handle;
  }

  /** The reply once it is final (public, not deferred, no Cancel button left). */
  async finalReply(handle: InteractionHandle, timeoutMs = 60_000): Promise<StoredMessage> {
    return this.fake.waitFor(
      () => {
        const reply = this.fake.originalResponse(handle);
        if (!reply || reply.flags & MessageFlags.Loading) return undefined;
        if (reply.flags & MessageFlags.Ephemeral) throw new Error(`expected a public reply, got the ephemeral "${reply.content}"`);
        return JSON.stringify(reply.components).includes('imagine:cancel:') ? undefined : reply;
      },
      timeoutMs,
      'final reply',
    );
  }

  async replyMatching(handle: InteractionHandle, pattern: RegExp, timeoutMs = 30_000): Promise<StoredMessage> {
    return this.fake.waitFor(() => {
      const reply = this.fake.originalResponse(handle);
      return reply && pattern.test(reply.content) && reply;
    }, timeoutMs, `reply matching ${pattern}`);
  }

  /** The immediate ephemeral reply a command got. */
  async refusal(handle: InteractionHandle): Promise<string> {
    const interaction = await this.fake.waitFor(() => this.fake.interaction(handle).callback && this.fake.interaction(handle), 5_000, 'refusal');
    const data = interaction.callback?.data as { content: string; flags?: number };
    if (!((data.flags ?? 0) & MessageFlags.Ephemeral)) throw new Error(`"${data.content}" is not an ephemeral reply`);
    return data.content;
  }

  /** Presses Cancel on the job's reply as its requester. */
  async cancel(handle: InteractionHandle): Promise<void> {
    const reply = await this.fake.waitFor(() => this.fake.originalResponse(handle), 5_000, 'reply to cancel');
    const customId = [...JSON.stringify(reply.components).matchAll(/"custom_id":"(imagine:cancel:[^"]+)"/g)][0]?.[1];
    if (!customId) throw new Error(`no Cancel button on "${reply.content}"`);
    this.fake.clickButton({ messageId: reply.id, customId, user: this.fake.interaction(handle).user });
  }

  /** How many times the job's images were posted: revisions of the reply with images (previews aside), follow-ups, channel messages. */
  deliveries(handle: InteractionHandle): number {
    const reply = this.fake.originalResponse(handle);
    const userId = this.fake.interaction(handle).user.id;
    const inReply = reply?.revisions.filter(hasImages).length ?? 0;
    const followups = this.fake.followups(handle).filter((message) => message.attachments.length > 0).length;
    const command = this.commands.get(handle.id);
    if (!command) throw new Error(`interaction ${handle.id} was not sent by cluster.imagine`);
    const inChannel = this.fake.messages.filter(
      (message) =>
        message.origin.kind === 'channel' &&
        message.createdAt.getTime() >= command.sentAt &&
        message.attachments.length > 0 &&
        message.content.includes(`<@${userId}>`) &&
        message.embeds[0]?.description === command.prompt,
    ).length;
    return inReply + followups + inChannel;
  }

  /** A direct connection to the test's Redis, for looking at what the bot and workers left there. */
  connect(): Redis {
    return new Redis(this.redis.url, { maxRetriesPerRequest: 1 });
  }

  /** SIGTERM to every process still running (SIGKILL after 10 s), then Redis and the fake. */
  async stop(): Promise<void> {
    await Promise.all(this.roles.map((role) => stopRole(role)));
    await this.redis.dispose();
    await this.fake.close();
  }

  /** Ends the roles (gracefully) and empties Redis, keeping the fake and Redis for the next test. */
  async reset(): Promise<void> {
    await Promise.all(this.roles.splice(0).map((role) => stopRole(role)));
    if (!this.redis.running) await this.redis.resume();
    const redis = this.connect();
    await redis.flushall();
    await redis.quit();
  }

  private spawn(name: string, script: string, environment: Record<string, string>): Role {
    const child = spawn(process.execPath, [entryPoint(script)], {
      cwd,
      env: { PATH: process.env.PATH ?? '', ...this.environment, ...environment },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    const lines: Record<string, unknown>[] = [];
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString('utf8');
      const complete = stdout.lastIndexOf('\n');
      if (complete === -1) return;
      for (const line of stdout.slice(0, complete).split('\n')) if (line.startsWith('{')) lines.push(JSON.parse(line));
      stdout = stdout.slice(complete + 1);
    });
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const matches = (message: string, fields: Record<string, unknown> = {}) =>
      lines.filter((line) => line.msg === message && Object.entries(fields).every(([key, value]) => line[key] === value));
    const role: Role = {
      name: `${name}-${this.roles.length + 1}`,
      lines,
      output: () => `${lines.map((line) => JSON.stringify(line)).join('\n')}\n${stderr}`,
      exit,
      get running() {
        return child.exitCode === null && child.signalCode === null;
      },
      kill: (signal) => child.kill(signal),
      logged: matches,
      waitForLog: async (message, fields = {}, timeoutMs = 30_000) => {
        try {
          return await this.fake.waitFor(() => {
            if (!role.running) throw new Error(`${role.name} exited while waiting for "${message}"`);
            return matches(message, fields)[0];
          }, timeoutMs, `${role.name} logging "${message}"`);
        } catch (error) {
          throw new Error(`${(error as Error).message}\n--- ${role.name} output ---\n${role.output().slice(-4000)}`);
        }
      },
    };
    this.roles.push(role);
    return role;
  }
}

async function stopRole(role: Role): Promise<void> {
  if (!role.running) return;
  role.kill('SIGTERM');
  const timer = setTimeout(() => role.kill('SIGKILL'), 10_000);
  await role.exit;
  clearTimeout(timer);
}
