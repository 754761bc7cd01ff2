import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import PQueue from 'p-queue';
import type { ModelCatalog } from '../models/catalog.ts';
import type { GenerateRequest, ModelInfo } from '../pipeline/types.ts';
import { FairOrder } from './fair-order.ts';
import type { JobJournal } from './job-journal.ts';
import { modelForJob, OptionError, resolveRequests } from './generation-policy.ts';
import {
  JobCancelledError,
  JobFailedError,
  QueueRejection,
  type CancelReason,
  type DeliveryRecord,
  type EnqueueExtras,
  type GeneratedImage,
  type GenerationPolicy,
  type ImageGenerator,
  type ImagineOptions,
  type JobHandle,
  type JobQueue,
  type JobResult,
  type JobStatus,
  type ModelStatus,
} from './types.ts';

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
}

/** After an abort, how long close() waits for the generator to give up before it stops waiting. */
const ABORT_WAIT_MS = 10_000;
const MAX_ERROR_LENGTH = 400;

/** The in-process backend: one generator (one model, one device) behind a p-queue of concurrency 1. */
export class LocalJobQueue implements JobQueue {
  private readonly slots = new PQueue({ concurrency: 1, autoStart: false });
  private readonly order = new FairOrder<LocalJob>();
  private readonly jobs = new Map<string, LocalJob>();
  private model: ModelStatus = { state: 'loading' };
  private closed = false;

  constructor(private readonly options: LocalQueueOptions) {
    options.generator.ready
      .then(
        (model) => (this.model = { state: 'ready', model }),
        (error: unknown) => (this.model = { state: 'failed', message: shortMessage(error) }),
      )
      .finally(() => {
        this.slots.start();
        this.publishPositions();
      });
  }

  async enqueue(userId: string, options: ImagineOptions, extras: EnqueueExtras = {}): Promise<JobHandle> {
    if (this.closed) throw new QueueRejection('closed', 0);
    if (this.order.size >= this.options.maxQueue) throw new QueueRejection('queue_full', this.options.maxQueue);
    if (this.order.countFor(userId) >= this.options.maxJobsPerUser) {
      throw new QueueRejection('user_limit', this.options.maxJobsPerUser);
    }
    const model = this.modelFor(options);
    if (model) resolveRequests(options, this.options.policy, model);

    const id = randomBytes(6).toString('base64url');
    this.options.journal?.accepted({ id, userId, options, delivery: extras.delivery ?? null });
    return this.admit(id, userId, options, false);
  }

  /** The jobs the journal holds from before a crash, in their order, each with where its messages go. */
  recover(onJob: (job: JobHandle, delivery: DeliveryRecord) => void): void {
    for (const entry of this.options.journal?.pending() ?? []) {
      if (this.closed || this.jobs.has(entry.id)) continue;
      onJob(this.admit(entry.id, entry.userId, entry.options, true), entry.delivery ?? {});
    }
  }

  private admit(id: string, userId: string, options: ImagineOptions, possiblyPosted: boolean): LocalJob {
    const job: LocalJob = new LocalJob(id, userId, options, possiblyPosted, {
      cancel: (reason) => this.cancel(job, reason),
      acknowledge: () => this.options.journal?.finished(job.id),
    });
    this.jobs.set(job.id, job);
    const tag = this.order.add(job);
    this.slots
      .add(() => this.run(job), { priority: -tag, signal: job.signal })
      .catch(() => this.settle(job, () => job.reject(new JobCancelledError(job.cancelReason ?? 'user'))));
    this.publishPositions();
    return job;
  }

  find(jobId: string): JobHandle | undefined {
    return this.jobs.get(jobId);
  }

  modelStatus(): ModelStatus {
    return this.model;
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

  private cancel(job: LocalJob, reason: CancelReason): boolean {
    if (job.settled || job.cancelReason) return false;
    job.cancelReason = reason;
    job.abort();
    return true;
  }

  private async run(job: LocalJob): Promise<void> {
    this.order.start(job);
    this.publishPositions();
    const started = performance.now();
    try {
      const requests = this.requestsFor(job);
      const images: GeneratedImage[] = [];
      for (const [index, request] of requests.entries()) {
        const progress = { state: 'running', image: index + 1, images: requests.length } as const;
        job.setStatus({ ...progress, step: 0, totalSteps: request.steps ?? 0 });
        images.push(
          await this.options.generator.generate(request, {
            model: job.options.model,
            onModelLoad: (model) => job.setStatus({ ...progress, step: 0, totalSteps: request.steps ?? 0, loadingModel: model }),
            signal: job.signal,
            onStep: ({ step, totalSteps }) => job.setStatus({ ...progress, step, totalSteps }),
          }),
        );
      }
      this.settle(job, () => job.resolve({ images, elapsedMs: performance.now() - started }));
    } catch (error) {
      this.settle(job, () => job.reject(job.cancelReason ? new JobCancelledError(job.cancelReason) : failure(error)));
    }
  }

  private requestsFor(job: LocalJob): GenerateRequest[] {
    if (job.cancelReason) throw new JobCancelledError(job.cancelReason);
    if (this.model.state === 'failed') throw new JobFailedError(`The model could not be loaded: ${this.model.message}`);
    const model = this.modelFor(job.options);
    if (!model) throw new Error('LocalJobQueue ran a job before the model was ready');
    return resolveRequests(job.options, this.options.policy, model);
  }

  /** What the job's options are checked against: its model as the catalog describes it, else the loaded model. */
  private modelFor(options: ImagineOptions): ModelInfo | undefined {
    return modelForJob(options.model, this.options.catalog, this.model.state === 'ready' ? this.model.model : undefined);
  }

  private settle(job: LocalJob, finish: () => void): void {
    if (job.settled) return;
    this.order.remove(job);
    this.jobs.delete(job.id);
    finish();
    this.publishPositions();
  }

  private publishPositions(): void {
    const modelLoading = this.model.state === 'loading';
    this.order.waitingItems().forEach((job, index) => job.setStatus({ state: 'waiting', position: index + 1, modelLoading }));
  }
}

function failure(error: unknown): JobFailedError {
  if (error instanceof JobFailedError) return error;
  const message = error instanceof OptionError ? error.message : shortMessage(error);
  return new JobFailedError(message, { cause: error });
}

function shortMessage(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const firstLines = message.split('\n').slice(0, 3).join(' ').trim();
  return firstLines.length > MAX_ERROR_LENGTH ? `${firstLines.slice(0, MAX_ERROR_LENGTH - 1)}…` : firstLines || 'unknown error';
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

function sameStatus(a: JobStatus, b: JobStatus): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
