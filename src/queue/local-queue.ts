import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import PQueue from 'p-queue';
import type { Logger } from 'pino';
import { failureForUser, JobCancelledError, type CancelReason } from '../jobs/errors.ts';
import { resolveRequests, withPictures, withoutPictures, type GenerationPolicy, type ImagineOptions } from '../jobs/options.ts';
import { checkPromptLengthIfPossible } from '../jobs/prompt-length.ts';
import { runJob, type ImageGenerator, type JobResult } from '../jobs/runner.ts';
import { modelForJob, offeredModels, type ModelCatalog, type OfferedModels } from '../models/catalog.ts';
import { TokenizerCache } from '../models/tokenizer-cache.ts';
import { ClipTokenizer } from '../pipeline/tokenizer.ts';
import type { GenerateRequest, ModelInfo } from '../pipeline/types.ts';
import { FairOrder } from './fair-order.ts';
import type { JobJournal } from './job-journal.ts';
import { QueueRejection, sameStatus, type DeliveryRecord, type EnqueueExtras, type JobHandle, type JobQueue, type JobStatus, type ModelStatus, type QueuedJob } from './types.ts';

export interface LocalQueueOptions {
  generator: ImageGenerator;
  /** The models jobs may name (the generator must switch between them, see ModelSwitcher); only the loaded one when absent. */
  catalog?: ModelCatalog;
  policy: GenerationPolicy;
  /** Jobs waiting or running, all users together. */
  maxQueue: number;
  maxJobsPerUser: number;
  /** Keeps a record of the accepted jobs, so that a bot started again after a crash takes them up (see recover). */
  journal?: JobJournal;
  /** What the generator runs on (EXECUTION_PROVIDER), for /info. */
  executionProvider?: string;
  /** The generator's images go through the safety checker. */
  safetyChecked?: boolean;
  /** Where failures that are not the user's to fix are logged, with the job id the user is given. */
  logger: Logger;
}

/** After an abort, how long close() waits for the generator to give up before it stops waiting. */
const ABORT_WAIT_MS = 10_000;

/**
 * The in-process backend: one generator (one model, one device). FairOrder alone decides which job runs next and
 * every waiting job's position; p-queue (concurrency 1) serializes the runs on the generator, given one job at a time.
 */
export class LocalJobQueue implements JobQueue {
  private readonly generatorRuns = new PQueue({ concurrency: 1 });
  private readonly order = new FairOrder<LocalJob>();
  private readonly jobs = new Map<string, LocalJob>();
  private readonly log: Logger;
  private readonly tokenizers = new TokenizerCache();
  private model: ModelStatus = { state: 'loading' };
  /** Why the model failed to load: what a job that needed it is logged with. */
  private loadError: unknown;
  private closed = false;

  constructor(private readonly options: LocalQueueOptions) {
    this.log = options.logger.child({ component: 'local-queue' });
    options.generator.ready
      .then(
        (model) => (this.model = { state: 'ready', model }),
        (error: unknown) => {
          this.model = { state: 'failed' };
          this.loadError = error;
        },
      )
      .finally(() => {
        this.startNext();
        this.publishPositions();
      });
  }

  async enqueue(userId: string, options: ImagineOptions, extras: EnqueueExtras = {}): Promise<JobHandle> {
    const { guildId, queueShare } = extras;
    const policy = extras.policy ?? this.options.policy;
    this.checkRoom(userId, guildId, queueShare);
    // Settled now when the model to check against is known (always, with a catalog), else when the job starts.
    const model = this.modelFor(options);
    const requests = model ? resolveRequests(options, policy, model) : null;
    if (model && requests) {
      await checkPromptLengthIfPossible(requests[0], model, (info) => this.tokenizer(info), this.log);
      this.checkRoom(userId, guildId, queueShare);
    }
    const id = randomBytes(6).toString('base64url');
    this.options.journal?.accepted({ id, userId, options, requests: requests && withoutPictures(requests), policy: extras.policy, guildId, delivery: extras.delivery ?? null });
    return this.admit(id, userId, options, { requests, policy, guildId }, false);
  }

  /** The jobs the journal holds from before a crash, in their order, each with where its messages go. */
  recover(onJob: (job: JobHandle, delivery: DeliveryRecord) => void): void {
    for (const entry of this.options.journal?.pending() ?? []) {
      if (this.closed || this.jobs.has(entry.id)) continue;
      const settlement = { requests: entry.requests ? withPictures(entry.requests, entry.options) : null, policy: entry.policy ?? this.options.policy, guildId: entry.guildId };
      onJob(this.admit(entry.id, entry.userId, entry.options, settlement, true), entry.delivery ?? {});
    }
  }

  private admit(id: string, userId: string, options: ImagineOptions, settlement: JobSettlement, possiblyPosted: boolean): LocalJob {
    const job: LocalJob = new LocalJob(id, userId, options, settlement, possiblyPosted, {
      cancel: (reason) => this.requestCancel(job, reason),
      acknowledge: () => this.options.journal?.finished(job.id),
    });
    this.jobs.set(job.id, job);
    this.order.add(job);
    this.publishPositions();
    this.startNext();
    return job;
  }

  private countForServer(guildId: string): number {
    return [...this.jobs.values()].filter((job) => job.settlement.guildId === guildId).length;
  }

  find(jobId: string): JobHandle | undefined {
    return this.jobs.get(jobId);
  }

  async cancel(jobId: string, reason: CancelReason): Promise<boolean> {
    return this.jobs.get(jobId)?.cancel(reason) ?? false;
  }

  modelStatus(): ModelStatus {
    return this.model;
  }

  async list(): Promise<QueuedJob[]> {
    return [...this.order.runningItems(), ...this.order.waitingItems()].map((job) => ({
      id: job.id,
      userId: job.userId,
      guildId: job.settlement.guildId,
      prompt: job.options.prompt,
      status: job.status(),
    }));
  }

  executionProviders(): string[] {
    return this.options.executionProvider === undefined ? [] : [this.options.executionProvider];
  }

  safetyChecked(): boolean {
    return this.options.safetyChecked ?? false;
  }

  offeredModels(): OfferedModels | undefined {
    return offeredModels(this.options.catalog, this.model.state === 'ready' ? this.model.model : undefined);
  }

  /** From the model's own tokenizer/ folder, which this process can read. */
  tokenizer(model: ModelInfo): Promise<ClipTokenizer> {
    return this.tokenizers.get(model.dir, () => ClipTokenizer.fromDirectory(join(model.dir, 'tokenizer')));
  }

  async close(graceMs: number): Promise<void> {
    this.closed = true;
    for (const job of this.order.waitingItems()) job.cancel('shutdown');
    const running = this.order.runningItems();
    const settled = Promise.allSettled(running.map((job) => job.result));
    if ((await Promise.race([settled.then(() => true), sleep(graceMs, false)])) === false) {
      for (const job of running) job.cancel('shutdown');
      await Promise.race([settled, sleep(ABORT_WAIT_MS)]);
    }
  }

  private requestCancel(job: LocalJob, reason: CancelReason): boolean {
    if (job.settled || job.cancelReason) return false;
    job.cancelReason = reason;
    if (this.order.runningItems().includes(job)) job.abort();
    else this.finish(job, () => job.reject(new JobCancelledError(reason)));
    return true;
  }

  /** Hands the first waiting job to the generator once the model has loaded (or failed) and nothing else runs. */
  private startNext(): void {
    if (this.model.state === 'loading' || this.order.runningItems().length > 0) return;
    const next = this.order.waitingItems()[0];
    if (!next) return;
    this.order.start(next);
    this.publishPositions();
    void this.generatorRuns.add(() => this.run(next));
  }

  private async run(job: LocalJob): Promise<void> {
    try {
      const model = job.settlement.requests ? undefined : this.modelFor(job.options);
      const requests = job.settlement.requests ?? (model && resolveRequests(job.options, job.settlement.policy, model));
      if (!requests) throw this.loadError;
      const result = await runJob(requests, job.options.model, this.options.generator, {
        signal: job.signal,
        onProgress: (progress) => job.setStatus({ state: 'running', ...progress }),
        previews: this.options.policy.previews,
        stepsVideo: job.options.stepsVideo,
      });
      this.finish(job, () => job.resolve(result));
    } catch (error) {
      this.finish(job, () => job.reject(failureForUser(error, job.id, this.log, job.cancelReason)));
    }
  }

  private checkRoom(userId: string, guildId: string | undefined, queueShare: number | undefined): void {
    if (this.closed) throw new QueueRejection('closed', 0);
    if (this.order.size >= this.options.maxQueue) throw new QueueRejection('queue_full', this.options.maxQueue);
    if (this.order.countFor(userId) >= this.options.maxJobsPerUser) {
      throw new QueueRejection('user_limit', this.options.maxJobsPerUser);
    }
    if (guildId !== undefined && queueShare !== undefined && this.countForServer(guildId) >= queueShare) {
      throw new QueueRejection('server_limit', queueShare);
    }
  }

  /** The model the job's options are checked against, or undefined while there is none (no catalog, still loading). Throws OptionError. */
  private modelFor(options: ImagineOptions): ModelInfo | undefined {
    return modelForJob(options.model, this.options.catalog, this.model.state === 'ready' ? this.model.model : undefined);
  }

  private finish(job: LocalJob, settle: () => void): void {
    if (job.settled) return;
    this.order.remove(job);
    this.jobs.delete(job.id);
    settle();
    this.publishPositions();
    this.startNext();
  }

  private publishPositions(): void {
    const modelLoading = this.model.state === 'loading';
    this.order.waitingItems().forEach((job, index) => job.setStatus({ state: 'waiting', position: index + 1, modelLoading }));
  }
}

/** How a job is settled into pipeline requests, and the server it came from. */
interface JobSettlement {
  /** Settled at enqueue; null when the model was not known yet. */
  requests: GenerateRequest[] | null;
  /** The defaults and limits to settle it with when it starts (its server's). */
  policy: GenerationPolicy;
  guildId: string | undefined;
}

class LocalJob implements JobHandle {
  readonly result: Promise<JobResult>;
  resolve!: (result: JobResult) => void;
  reject!: (error: Error) => void;
  settled = false;
  cancelReason: CancelReason | undefined;
  private readonly controller = new AbortController();
  private current: JobStatus = { state: 'waiting', position: 0, modelLoading: false };
  private readonly listeners = new Set<(status: JobStatus) => void>();

  constructor(
    readonly id: string,
    readonly userId: string,
    readonly options: ImagineOptions,
    readonly settlement: JobSettlement,
    /** Taken up again from the journal: a bot that crashed may have posted its outcome already. */
    readonly possiblyPosted: boolean,
    private readonly queue: { cancel(reason: CancelReason): boolean; acknowledge(): void },
  ) {
    this.result = new Promise<JobResult>((resolve, reject) => {
      this.resolve = (result) => {
        this.settled = true;
        this.listeners.clear();
        resolve(result);
      };
      this.reject = (error) => {
        this.settled = true;
        this.listeners.clear();
        reject(error);
      };
    });
    // Callers may drop the promise (a cancelled job nobody awaits); the rejection is still delivered to those who do.
    this.result.catch(() => {});
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  abort(): void {
    this.controller.abort(new JobCancelledError(this.cancelReason ?? 'user'));
  }

  status(): JobStatus {
    return this.current;
  }

  onStatus(listener: (status: JobStatus) => void): () => void {
    if (!this.settled) this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  cancel(reason: CancelReason): boolean {
    return this.queue.cancel(reason);
  }

  async acknowledge(): Promise<void> {
    this.queue.acknowledge();
  }

  setStatus(status: JobStatus): void {
    if (this.settled || sameStatus(this.current, status)) return;
    this.current = status;
    for (const listener of this.listeners) listener(status);
  }
}
