import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import type { CancelReason } from '../jobs/errors.ts';
import type { GenerationPolicy, ImagineOptions } from '../jobs/options.ts';
import type { StepsAnimation } from '../image/steps-animation.ts';
import type { GeneratedImage, JobProgress, JobResult } from '../jobs/runner.ts';
import type { OfferedModels } from '../models/catalog.ts';
import type { TokenizerFiles } from '../pipeline/tokenizer.ts';
import type { GenerateRequest, ModelInfo } from '../pipeline/types.ts';
import type { DeliveryRecord } from './types.ts';

// What the bot (BullJobQueue) and the workers (RemoteWorker) agree on: names in Redis, and the shapes of a
// job's data, progress and return value. Everything in Redis is plain JSON.

/** BullMQ's key prefix and queue name: the jobs live under imagine:jobs:*. */
export const BULL_PREFIX = 'imagine';
export const QUEUE_NAME = 'jobs';

const OWN = 'imagine-bot';
/** Keys of our own next to BullMQ's: the fairness ledger, cancellations, delivery claims, worker heartbeats. */
export const KEYS = {
  /** Hash: job id → {user, tag, at} for every job waiting or running (the limits and the fair order). */
  live: `${OWN}:live`,
  /** The fair-order tag of the job that started last. */
  virtualTime: `${OWN}:virtual-time`,
  /** Set while a cancel is pending; the worker checks it before each image. */
  cancel: (jobId: string) => `${OWN}:cancel:${jobId}`,
  /** "owner:<bot>" with a lease while a bot follows and posts the job, "done" once it is posted. */
  delivery: (jobId: string) => `${OWN}:delivery:${jobId}`,
  /** Set when a bot starts posting the job's outcome: a bot taking the job over checks Discord before posting again. */
  posting: (jobId: string) => `${OWN}:posting:${jobId}`,
  /** Hash {step, totalSteps, jpeg}: the running job's newest preview (its bytes stay out of the progress the bot polls). */
  preview: (jobId: string) => `${OWN}:preview:${jobId}`,
  /** Set of worker ids; each has a heartbeat key that expires when the worker stops renewing it. */
  workers: `${OWN}:workers`,
  worker: (workerId: string) => `${OWN}:worker:${workerId}`,
  /** A model's tokenizer files (JSON of TokenizerFiles), by their SHA-256: workers publish them, bots read them. */
  tokenizer: (digest: string) => `${OWN}:tokenizer:${digest}`,
} as const;

/**
 * How long a published tokenizer stays without a worker renewing it (each heartbeat does). The bot has no model files
 * (with Compose it has no models volume), so the token view and the prompt-length check read the tokenizer from here.
 */
export const TOKENIZER_TTL_S = 600;

/** A tokenizer as it is stored in Redis, and the digest that names it. */
export function tokenizerPayload(files: TokenizerFiles): { digest: string; payload: string } {
  const payload = JSON.stringify(files);
  return { digest: createHash('sha256').update(payload).digest('hex'), payload };
}

/** Throws when the stored text is not a tokenizer's files. */
export function decodeTokenizerPayload(payload: string): TokenizerFiles {
  const files = JSON.parse(payload) as Partial<TokenizerFiles> | null;
  if (typeof files?.vocab !== 'string' || typeof files.merges !== 'string') throw new Error('the stored tokenizer lacks vocab.json or merges.txt');
  return files as TokenizerFiles;
}

/** Pub/sub channel: a job id published here is aborted by whichever worker runs it, within one step. */
export const CANCEL_CHANNEL = `${OWN}:cancel`;

/** A job's data: everything a worker needs, and the delivery record. */
export interface RemoteJobData {
  userId: string;
  options: ImagineOptions;
  /**
   * The options settled by the bot (resolveRequests) against the model a worker announced; null when no worker had
   * announced its models yet, and then the worker that takes the job settles them, with the bot's policy. Without
   * their pictures (withoutPictures): the options hold the job's one picture.
   */
  requests: GenerateRequest[] | null;
  policy: GenerationPolicy;
  /** The server the job came from (absent in jobs of older bots). */
  guildId?: string;
  delivery: DeliveryRecord | null;
}

/** The job's return value: the images with their PNG bytes as base64. */
export interface RemoteJobResult {
  images: (Omit<GeneratedImage, 'png' | 'animation'> & { png: string; animation?: Omit<StepsAnimation, 'data' | 'strip'> & { data: string; strip: string } })[];
  elapsedMs: number;
}

/** A worker's heartbeat, renewed every few seconds. */
export interface WorkerHeartbeat {
  state: 'loading' | 'ready';
  /** Its default model, once loaded. */
  model: ModelInfo | null;
  /** The models it can run (read from their files, so known while the default one loads). */
  models: OfferedModels | null;
  /** The digest of each offered model's published tokenizer (see KEYS.tokenizer), by model name. */
  tokenizers?: Record<string, string>;
  host: string;
  pid: number;
  /** What its models run on (EXECUTION_PROVIDER); absent in older workers' heartbeats. */
  executionProvider?: string;
  /** Its images go through the safety checker (SAFETY_CHECKER). */
  safetyChecked?: boolean;
}

/**
 * A job's progress as a worker reports it (job.updateProgress). A preview is announced by its step; its JPEG is in
 * KEYS.preview, fetched by the bot once per preview.
 */
export type RemoteProgress = Omit<JobProgress, 'preview'> & { previewStep?: number };

/** A preview outlives its job by this much at most (the worker deletes it when the job ends). */
export const PREVIEW_TTL_MS = 10 * 60_000;

/** failedReason of a job a worker stopped because it was cancelled: "cancelled:user". */
export const CANCELLED_PREFIX = 'cancelled:';
/** failedReason of a job that failed with a message for its user: "failed:<message>". Any other reason is internal. */
export const FAILED_PREFIX = 'failed:';

export function cancelledReason(reason: CancelReason): string {
  return `${CANCELLED_PREFIX}${reason}`;
}

export function failedReason(userMessage: string): string {
  return `${FAILED_PREFIX}${userMessage}`;
}

export function encodeResult(result: JobResult): RemoteJobResult {
  return {
    images: result.images.map(({ animation, ...image }) => ({
      ...image,
      png: Buffer.from(image.png).toString('base64'),
      ...(animation && { animation: { ...animation, data: Buffer.from(animation.data).toString('base64'), strip: Buffer.from(animation.strip).toString('base64') } }),
    })),
    elapsedMs: result.elapsedMs,
  };
}

/** Throws naming what is missing when a worker's return value is not a result. */
export function decodeResult(value: unknown): JobResult {
  const candidate = value as Partial<RemoteJobResult> | null;
  if (!candidate || !Array.isArray(candidate.images) || candidate.images.length === 0 || typeof candidate.elapsedMs !== 'number') {
    throw new Error('the worker returned no images');
  }
  return {
    images: candidate.images.map((image, index) => {
      if (typeof image?.png !== 'string' || !image.settings) throw new Error(`image ${index + 1} of the worker's result is malformed`);
      const { animation, ...rest } = image;
      return {
        ...rest,
        png: new Uint8Array(Buffer.from(image.png, 'base64')),
        ...(animation && { animation: { ...animation, data: new Uint8Array(Buffer.from(animation.data, 'base64')), strip: new Uint8Array(Buffer.from(animation.strip, 'base64')) } }),
      };
    }),
    elapsedMs: candidate.elapsedMs,
  };
}

/** BullMQ's priority range is 1 (first) to 2^21. */
const MAX_PRIORITY = 2 ** 21;

export function priorityOf(tag: number): number {
  return Math.min(tag + 1, MAX_PRIORITY);
}

/**
 * A connection for the bot: no offline queue and a short command timeout, so that while Redis is unreachable
 * every call fails at once (users get "temporarily unavailable" within Discord's 3-second window) instead
 * of hanging; it reconnects by itself.
 */
export function botConnection(url: string): Redis {
  return new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: 2_000,
    retryStrategy: (attempt) => Math.min(attempt * 200, 2_000),
  });
}

/** A connection for a worker: commands wait for a reconnect (BullMQ requires this of its blocking connections). */
export function workerConnection(url: string): Redis {
  return new Redis(url, { maxRetriesPerRequest: null, retryStrategy: (attempt) => Math.min(attempt * 200, 2_000) });
}
