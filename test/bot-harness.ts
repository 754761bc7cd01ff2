import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import sharp from 'sharp';
import { InteractionResponseType, MessageFlags } from 'discord.js';
import { afterAll, afterEach, beforeAll, expect, vi } from 'vitest';
import { loadConfig, type BotConfig } from '../src/config.ts';
import { startBot, type RunningBot } from '../src/discord/bot.ts';
import { deployCommands } from '../src/discord/deploy.ts';
import type { ImageGenerator } from '../src/jobs/runner.ts';
import { createLogger } from '../src/log.ts';
import { BullJobQueue } from '../src/queue/bullmq-queue.ts';
import { LocalJobQueue } from '../src/queue/local-queue.ts';
import type { JobQueue } from '../src/queue/types.ts';
import { SqliteSettingsStore } from '../src/settings/sqlite-store.ts';
import { ensureTinyModel, writeTinyTaesd } from '../src/tiny-model/index.ts';
import { PipelineThread, type PipelineThreadOptions } from '../src/worker/pipeline-thread.ts';
import { RemoteWorker } from '../src/worker/remote-worker.ts';
import { RedisServer } from './redis-server.ts';
import { FakeDiscord, type FakeDiscordOptions, type InteractionHandle, type InvocationOptions, type MessageRevision, type OptionValue, type StoredMessage } from './fake-discord/index.ts';

export const TINY_DECODER_NAME = 'taesd-tiny';

/** Settings that keep the tiny model fast and the timings short; a test overrides what it exercises. */
export const TEST_ENVIRONMENT: Record<string, string> = {
  SIZES: '64x64,128x64,512x512',
  DEFAULT_SIZE: '64x64',
  DEFAULT_STEPS: '2',
  MAX_STEPS: '150',
  PROGRESS_EDIT_INTERVAL_MS: '100',
  SHUTDOWN_TIMEOUT_MS: '2000',
  LOG_LEVEL: 'debug',
};

/** Keeps the queue busy: 4 images of 512x512 at 150 steps take the tiny model many seconds; tests cancel it. */
export const BLOCKER_OPTIONS = { prompt: 'blocker', size: '512x512', steps: 150, count: 4 } as const;

export interface Harness {
  fake: FakeDiscord;
  bot: RunningBot;
  queue: JobQueue;
  config: BotConfig;
  /** Where the bot keeps its servers' settings (kept across restart()). */
  dataDir: string;
  logs: Record<string, unknown>[];
  imagine(username: string, options: Record<string, OptionValue>, invocation?: InvocationOptions): InteractionHandle;
  /** The interaction's reply once it is final (no Cancel button left, not deferred), or throws after timeoutMs. */
  finalReply(handle: InteractionHandle, timeoutMs?: number): Promise<StoredMessage>;
  /** The ephemeral refusal a command got. */
  refusal(handle: InteractionHandle): Promise<string>;
  /** Waits until the running job is this one. */
  waitUntilRunning(handle: InteractionHandle): Promise<void>;
  /** Waits for a reply whose text matches, and returns it. */
  replyMatching(handle: InteractionHandle, pattern: RegExp, timeoutMs?: number): Promise<StoredMessage>;
  /** Presses Cancel on the job's reply as its requester. */
  cancel(handle: InteractionHandle): Promise<void>;
  /** Shuts the bot down and starts a fresh one (new queue, nothing in memory) against the same fake. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** Harnesses started since the last afterEach of useSharedTinyPipeline, which stops them. */
const startedHarnesses: Harness[] = [];

/**
 * Registers the hooks the bot end-to-end files share and returns the generator for their bots: one tiny-model
 * pipeline thread for the whole file (loaded once, so the tests stay fast), and after each test every harness it
 * started is stopped and must have seen no internal errors in the fake Discord. `tinyDecoder`: with a tiny decoder
 * named TINY_DECODER_NAME loaded beside the model (in a describe block: for its tests only). `threadOptions`: more of
 * the thread's options, read when it starts.
 */
export function useSharedTinyPipeline({
  tinyDecoder = false,
  threadOptions = async () => ({}),
}: { tinyDecoder?: boolean; threadOptions?: () => Promise<Omit<PipelineThreadOptions, 'modelDir'>> } = {}): ImageGenerator {
  let thread: PipelineThread | undefined;
  let tinyDecoderDir: string | undefined;
  const startedThread = (): PipelineThread => {
    if (!thread) throw new Error('The shared tiny pipeline starts in beforeAll; use it inside a test');
    return thread;
  };
  beforeAll(async () => {
    if (tinyDecoder) {
      tinyDecoderDir = join(mkdtempSync(join(tmpdir(), 'imagine-bot-taesd-')), TINY_DECODER_NAME);
      await writeTinyTaesd(tinyDecoderDir);
    }
    thread = PipelineThread.start({ modelDir: await ensureTinyModel(), tinyVaeDir: tinyDecoderDir, ...(await threadOptions()) });
    await thread.ready;
  });
  afterAll(async () => {
    await thread?.dispose();
    if (tinyDecoderDir) rmSync(join(tinyDecoderDir, '..'), { recursive: true, force: true });
  });
  afterEach(async () => {
    for (const harness of startedHarnesses.splice(0)) {
      await harness.stop();
      expect(harness.fake.internalErrors).toEqual([]);
    }
  });
  return {
    get ready() {
      return startedThread().ready;
    },
    generate: (request, options) => startedThread().generate(request, options),
  };
}

/** A Redis server for the tests of the enclosing describe block (started once): the returned function gives its URL. */
export function useRedisServer(): () => string {
  let redis: RedisServer | undefined;
  beforeAll(async () => {
    redis = await RedisServer.start();
  });
  afterAll(async () => redis?.dispose());
  return () => {
    if (!redis) throw new Error('The Redis server starts in beforeAll; use it inside a test');
    return redis.url;
  };
}

/** The Redis backend without a bot: a Redis server, a RemoteWorker on `generator` and the bot side's queue, once a worker is seen. */
export interface RedisBackend {
  redis: RedisServer;
  worker: RemoteWorker;
  queue: BullJobQueue;
  close(): Promise<void>;
}

export async function startRedisBackend(generator: ImageGenerator): Promise<RedisBackend> {
  const redis = await RedisServer.start();
  const logger = createLogger('silent');
  const worker = new RemoteWorker({ redisUrl: redis.url, generator, stalledJobTimeoutMs: 3000, logger });
  const { generation: policy } = loadConfig({ ...TEST_ENVIRONMENT, DISCORD_TOKEN: 'token', DISCORD_APPLICATION_ID: '12345678901234567' });
  const queue = new BullJobQueue({ redisUrl: redis.url, policy, maxQueue: 10, maxJobsPerUser: 5, resultTtlMs: 60_000, logger });
  const close = async () => {
    await queue.close(0);
    await worker.close(0);
    await redis.dispose();
  };
  try {
    await vi.waitFor(() => queue.offeredModels() ?? Promise.reject(new Error('no worker yet')), { timeout: 10_000 });
  } catch (error) {
    await close();
    throw error;
  }
  return { redis, worker, queue, close };
}

/**
 * A bot in this process against a new fake Discord. With QUEUE_BACKEND=bullmq in `environment` (and REDIS_URL) its
 * jobs go through Redis to a RemoteWorker in this process that runs them on `generator`, as `npm start` does.
 */
export async function startHarness(
  generator: ImageGenerator,
  environment: Record<string, string> = {},
  fakeOptions: FakeDiscordOptions = {},
): Promise<Harness> {
  const fake = await FakeDiscord.start(fakeOptions);
  const config = loadConfig({
    ...TEST_ENVIRONMENT,
    DISCORD_TOKEN: fake.botToken,
    DISCORD_APPLICATION_ID: fake.applicationId,
    DISCORD_GUILD_ID: fake.guildId,
    DISCORD_API_URL: fake.apiUrl,
    ...environment,
  });
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) logs.push(JSON.parse(line));
      done();
    },
  });
  const logger = createLogger(config.logLevel, sink);
  await deployCommands(config);
  const dataDir = mkdtempSync(join(tmpdir(), 'imagine-bot-data-'));
  const backend = config.backend;
  const executionProvider = config.model.executionProvider;
  // As npm start: SAFETY_CHECKER says the generator checks its images (the shared pipeline thread loads the checker).
  const safetyChecked = config.model.safetyChecker !== undefined;
  const worker =
    backend.kind === 'bullmq'
      ? new RemoteWorker({ redisUrl: backend.redisUrl, generator, stalledJobTimeoutMs: backend.stalledJobTimeoutMs, executionProvider, safetyChecked, logger })
      : undefined;
  const start = async () => {
    const queue: JobQueue =
      backend.kind === 'local'
        ? new LocalJobQueue({ generator, policy: config.generation, ...config.queue, executionProvider, safetyChecked, logger })
        : new BullJobQueue({ redisUrl: backend.redisUrl, policy: config.generation, ...config.queue, resultTtlMs: backend.resultTtlMs, logger });
    const bot = await startBot({ config, queue, settings: SqliteSettingsStore.open(dataDir), logger });
    await fake.waitFor(() => bot.client.isReady() && bot.client.guilds.cache.size > 0, 5_000, 'bot ready');
    // Until the queue has heard from a worker, the Redis backend refuses jobs as unavailable.
    if (backend.kind === 'bullmq') await fake.waitFor(() => queue.offeredModels(), 10_000, 'a worker’s heartbeat');
    return { queue, bot };
  };

  const harness: Harness = {
    fake,
    ...(await start()),
    config,
    dataDir,
    logs,
    imagine: (username, options, invocation = {}) => fake.sendCommand({ name: 'imagine', options, user: fake.user(username), ...invocation }),
    async finalReply(handle, timeoutMs = 20_000) {
      return fake.waitFor(
        () => {
          const reply = fake.originalResponse(handle);
          if (!reply || reply.flags & MessageFlags.Loading) return undefined;
          if (reply.flags & MessageFlags.Ephemeral) throw new Error(`expected a public reply, got the ephemeral "${reply.content}"`);
          const hasCancel = reply.components.some((row) => JSON.stringify(row).includes('imagine:cancel:'));
          return hasCancel ? undefined : reply;
        },
        timeoutMs,
        'final reply',
      );
    },
    async refusal(handle) {
      const interaction = await fake.waitFor(() => fake.interaction(handle).callback && fake.interaction(handle), 5_000, 'refusal');
      if (interaction.callback?.type !== InteractionResponseType.ChannelMessageWithSource) {
        throw new Error(`expected an immediate reply, got callback type ${interaction.callback?.type}`);
      }
      const data = interaction.callback.data as { content: string; flags?: number };
      if (!((data.flags ?? 0) & MessageFlags.Ephemeral)) throw new Error(`the refusal "${data.content}" is not ephemeral`);
      return data.content;
    },
    async waitUntilRunning(handle) {
      await fake.waitFor(() => /Generating/.test(fake.originalResponse(handle)?.content ?? ''), 10_000, 'job running');
    },
    async replyMatching(handle, pattern, timeoutMs = 10_000) {
      return fake.waitFor(() => {
        const reply = fake.originalResponse(handle);
        return reply && pattern.test(reply.content) && reply;
      }, timeoutMs, `reply matching ${pattern}`);
    },
    async cancel(handle) {
      const reply = await fake.waitFor(() => fake.originalResponse(handle), 5_000, 'reply to cancel');
      const customId = customIds(reply).find((id) => id.startsWith('imagine:cancel:'));
      if (!customId) throw new Error(`no Cancel button on "${reply.content}"`);
      fake.clickButton({ messageId: reply.id, customId, user: fake.interaction(handle).user });
    },
    async restart() {
      await harness.bot.shutdown();
      Object.assign(harness, await start());
    },
    async stop() {
      await harness.bot.shutdown();
      await worker?.close(0);
      await fake.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  startedHarnesses.push(harness);
  return harness;
}

/** The interaction webhook's routes (reply edits, follow-ups) of one interaction, for fake.failNext / delayNext. */
export function webhookRoute(handle: InteractionHandle): RegExp {
  return new RegExp(`^/webhooks/\\d+/${handle.token}(/|$)`);
}

/** Starts a blocker for alice and a job for bob that waits behind it, with bob's first status edit done. */
export async function bobWaitingBehindBlocker(
  h: Harness,
  bobOptions: Record<string, OptionValue> = {},
  invocation: InvocationOptions = {},
): Promise<{ blocker: InteractionHandle; bob: InteractionHandle }> {
  const blocker = h.imagine('alice', BLOCKER_OPTIONS);
  await h.replyMatching(blocker, /Generating|next in the queue/);
  const bob = h.imagine('bob', { prompt: 'bob’s picture', seed: 3, ...bobOptions }, invocation);
  await h.replyMatching(bob, /next in the queue/);
  return { blocker, bob };
}

/** Whether a message (or one revision of it) carries a result's images, not just a preview of one. */
export function hasImages(message: Pick<MessageRevision, 'attachments'>): boolean {
  return message.attachments.some((attachment) => attachment.filename !== 'preview.jpg');
}

/** The seed(s) an embed lists. */
export function embedField(message: StoredMessage, name: string): string | undefined {
  return message.embeds[0]?.fields?.find((field) => field.name === name)?.value;
}

export function customIds(message: StoredMessage): string[] {
  return [...JSON.stringify(message.components).matchAll(/"custom_id":"([^"]+)"/g)].map((match) => match[1]);
}

/**
 * An upload limit that holds one but not both of the two images `options` (with count 2) draws, in the lossless
 * WebP the bot falls back to: drawn once without a limit (as `username`) and measured, so the tests that split a
 * result over messages hold whatever the tiny model's images compress to.
 */
export async function limitForOneOfTwo(harness: Harness, username: string, options: Record<string, OptionValue>): Promise<number> {
  const unlimited = await harness.finalReply(harness.imagine(username, { ...options, count: 2 }));
  const bytes = await Promise.all(unlimited.attachments.map(async (attachment) => (await sharp(attachment.data).webp({ lossless: true, effort: 6 }).toBuffer()).length));
  return Math.max(...bytes) + Math.floor(Math.min(...bytes) / 2);
}
