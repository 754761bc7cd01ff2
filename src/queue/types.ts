import type { CancelReason } from '../jobs/errors.ts';
import type { GenerationPolicy, ImagineOptions } from '../jobs/options.ts';
import type { JobProgress, JobResult } from '../jobs/runner.ts';
import type { OfferedModels } from '../models/catalog.ts';
import type { ClipTokenizer } from '../pipeline/tokenizer.ts';
import type { ModelInfo } from '../pipeline/types.ts';

export type JobStatus = { state: 'waiting'; /** 1 = next to run. */ position: number; modelLoading: boolean } | ({ state: 'running' } & JobProgress);

/** Whether two statuses say the same: a preview by identity (the same preview is the same object), the rest by value. */
export function sameStatus(a: JobStatus, b: JobStatus): boolean {
  const previewOf = (status: JobStatus) => (status.state === 'running' ? status.preview : undefined);
  const withoutPreview = (status: JobStatus) => JSON.stringify({ ...status, preview: undefined });
  return previewOf(a) === previewOf(b) && withoutPreview(a) === withoutPreview(b);
}

export interface JobHandle {
  readonly id: string;
  readonly userId: string;
  readonly options: ImagineOptions;
  status(): JobStatus;
  /** Called on every status change until the job settles; returns an unsubscribe function. */
  onStatus(listener: (status: JobStatus) => void): () => void;
  /** Resolves with the images; rejects with JobCancelledError or JobFailedError. */
  readonly result: Promise<JobResult>;
  /** False when the job had already finished. */
  cancel(reason: CancelReason): boolean;
  /**
   * For backends that keep a result until a bot posts it (bullmq): the job's last message is out, so no
   * bot, this one after a restart included, posts it again.
   */
  acknowledge?(): Promise<void>;
  /** An earlier bot process was posting this job's outcome when it stopped: look whether it arrived before posting again. */
  readonly possiblyPosted?: boolean;
}

/**
 * Where a job's messages go, as plain data the Discord side writes and reads back: a backend that outlives
 * the bot keeps it with the job, so a restarted bot can still deliver (see JobQueue.recover).
 */
export type DeliveryRecord = Readonly<Record<string, string | number | null>>;

export interface EnqueueExtras {
  /** Idempotency key (the interaction id): a second enqueue with the same id is refused as 'duplicate'. */
  id?: string;
  delivery?: DeliveryRecord;
  /** The server the job comes from (for its share of the queue). */
  guildId?: string;
  /** The defaults and limits to settle this job with (a server's, within the operator's); the queue's own when absent. */
  policy?: GenerationPolicy;
  /** The most jobs the job's server may have waiting or running (its share of the queue). */
  queueShare?: number;
}

/** A job as /queue lists it. */
export interface QueuedJob {
  id: string;
  userId: string;
  /** The server it came from; undefined for a direct message (or a job queued before servers were recorded). */
  guildId: string | undefined;
  prompt: string;
  status: JobStatus;
}

export type ModelStatus = { state: 'loading' } | { state: 'ready'; model: ModelInfo } | { state: 'failed' };

/** A queue of image jobs in front of one or more generators; the Discord side sees only this. */
export interface JobQueue {
  /** Rejects with QueueRejection when the queue or the user's share of it is full, or the queue is closed or unreachable. */
  enqueue(userId: string, options: ImagineOptions, extras?: EnqueueExtras): Promise<JobHandle>;
  /** A job this process follows (it accepted it, or took it over). */
  find(jobId: string): JobHandle | undefined;
  /** Cancels a waiting or running job, whichever bot process follows it; false when it has finished (or is unknown). */
  cancel(jobId: string, reason: CancelReason): Promise<boolean>;
  /** Every job waiting or running, all bot processes' together: the running first, then in the order they will run. */
  list(): Promise<QueuedJob[]>;
  /** The default model's state. */
  modelStatus(): ModelStatus;
  /** The execution providers the models run on (this process's, or each worker's). */
  executionProviders(): string[];
  /** Whether images go through the safety checker (with Redis: some worker announces one). */
  safetyChecked(): boolean;
  /** The models jobs may name: the local catalog's, or the workers' heartbeats'; undefined until a worker has reported. */
  offeredModels(): OfferedModels | undefined;
  /**
   * The CLIP tokenizer of an offered model, without loading the model: for the token view and the prompt-length check
   * at enqueue. Rejects when it cannot be had (with Redis: no worker has published it).
   */
  tokenizer(model: ModelInfo): Promise<ClipTokenizer>;
  /**
   * Local: refuses new jobs, cancels the waiting ones, lets the running one finish for graceMs, then aborts it.
   * Backends whose workers outlive the bot: lets this process go (its handles reject with JobDetachedError)
   * and leaves the jobs to run and to be delivered by the next bot.
   */
  close(graceMs: number): Promise<void>;
  /**
   * Backends that outlive the bot: hands over each job an earlier bot process left unfinished or undelivered,
   * with its delivery record, as it is found (now, and again whenever the backend comes back after an outage).
   */
  recover?(onJob: (job: JobHandle, delivery: DeliveryRecord) => void): void;
}

export type RejectionReason = 'queue_full' | 'user_limit' | 'server_limit' | 'closed' | 'unavailable' | 'duplicate';

export class QueueRejection extends Error {
  override name = 'QueueRejection';
  constructor(
    readonly reason: RejectionReason,
    readonly limit: number,
  ) {
    super(`job refused: ${reason} (limit ${limit})`);
  }
}

/** The job goes on without this process (the bot is shutting down, or another bot delivers it): nothing to tell the user from here. */
export class JobDetachedError extends Error {
  override name = 'JobDetachedError';
}
