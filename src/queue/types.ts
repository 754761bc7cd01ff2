import type { GenerateRequest, GenerationSettings, ModelInfo, PromptSyntax, StageTimings, StepProgress } from '../pipeline/types.ts';

/** Width and height of an image, e.g. 512x768. */
export interface ImageSize {
  width: number;
  height: number;
}

/** What a user asked for; everything left undefined comes from the operator's policy or the model. */
export interface ImagineOptions {
  prompt: string;
  negativePrompt?: string;
  /** Decimal string (0 .. 2^64-1); a random one when absent. Image i of the job uses seed + i. */
  seed?: string;
  steps?: number;
  guidance?: number;
  size?: ImageSize;
  /** Without a size: the offered size nearest to this width:height ratio (`--ar 16:9` in the prompt). */
  aspectRatio?: ImageSize;
  scheduler?: string;
  /** How the prompt is read; the policy's when absent. */
  promptSyntax?: PromptSyntax;
  /** The name of an installed model (never a path); the operator's default model when absent. */
  model?: string;
  /** Images in the job, 1 to MAX_IMAGES_PER_JOB. */
  count: number;
}

export const MAX_IMAGES_PER_JOB = 4;
export const MAX_PROMPT_LENGTH = 1000;

/** The operator's defaults and limits; the model fills in whatever is left undefined. */
export interface GenerationPolicy {
  defaultSteps: number | undefined;
  maxSteps: number;
  defaultGuidance: number | undefined;
  maxGuidance: number;
  defaultScheduler: string | undefined;
  defaultSize: ImageSize | undefined;
  /** Sizes offered besides the model's native size (those the model cannot draw are left out), or any it can draw. */
  sizes: readonly ImageSize[] | 'any';
  /** How prompts are read unless a job says otherwise (AUTOMATIC1111's syntax, or diffusers' plain text). */
  promptSyntax: PromptSyntax;
}

/** One finished image: PNG bytes with its parameters chunk and the settings that made it (plain data, so any backend can carry it). */
export interface GeneratedImage {
  png: Uint8Array;
  settings: GenerationSettings;
  timings: StageTimings;
  parameters: string;
}

export interface GeneratorCallOptions {
  signal?: AbortSignal;
  onStep?: (progress: StepProgress) => void;
  /** An installed model's name, for generators that can switch models (ModelSwitcher); others run their one model. */
  model?: string;
  /** Called when the requested model has to be loaded first. */
  onModelLoad?: (model: string) => void;
}

/** What runs a backend's jobs: one model (PipelineThread fits this shape), or one at a time of several (ModelSwitcher). */
export interface ImageGenerator {
  /** The default model, once loaded. */
  readonly ready: Promise<ModelInfo>;
  generate(request: GenerateRequest, options?: GeneratorCallOptions): Promise<GeneratedImage>;
}

export interface JobResult {
  images: GeneratedImage[];
  /** Wall time from the job's start to its last image. */
  elapsedMs: number;
}

export type JobStatus =
  | { state: 'waiting'; /** 1 = next to run. */ position: number; modelLoading: boolean }
  | { state: 'running'; image: number; images: number; step: number; totalSteps: number; /** Set while the job's model is being loaded. */ loadingModel?: string };

export type CancelReason = 'user' | 'shutdown';

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
}

export type ModelStatus = { state: 'loading' } | { state: 'ready'; model: ModelInfo } | { state: 'failed'; message: string };

/** A queue of image jobs in front of one or more generators; the Discord side sees only this. */
export interface JobQueue {
  /** Rejects with QueueRejection when the queue or the user's share of it is full, or the queue is closed or unreachable. */
  enqueue(userId: string, options: ImagineOptions, extras?: EnqueueExtras): Promise<JobHandle>;
  find(jobId: string): JobHandle | undefined;
  modelStatus(): ModelStatus;
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

export type RejectionReason = 'queue_full' | 'user_limit' | 'closed' | 'unavailable' | 'duplicate';

export class QueueRejection extends Error {
  override name = 'QueueRejection';
  constructor(
    readonly reason: RejectionReason,
    readonly limit: number,
  ) {
    super(`job refused: ${reason} (limit ${limit})`);
  }
}

export class JobCancelledError extends Error {
  override name = 'JobCancelledError';
  constructor(readonly reason: CancelReason) {
    super(reason === 'user' ? 'cancelled by the requester' : 'cancelled: the bot is shutting down');
  }
}

/** The job goes on without this process (the bot is shutting down, or another bot delivers it): nothing to tell the user from here. */
export class JobDetachedError extends Error {
  override name = 'JobDetachedError';
}

/** A job that could not produce its images; the message is meant for the user. */
export class JobFailedError extends Error {
  override name = 'JobFailedError';
}
