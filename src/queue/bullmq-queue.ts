import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { failureForUser, JobCancelledError, JobFailedError, type CancelReason } from '../jobs/errors.ts';
import { checkOptions, resolveRequests, withoutPictures, type GenerationPolicy, type ImagineOptions } from '../jobs/options.ts';
import { checkPromptLengthIfPossible } from '../jobs/prompt-length.ts';
import { offeredModel, type OfferedModels } from '../models/catalog.ts';
import { TokenizerCache } from '../models/tokenizer-cache.ts';
import { ClipTokenizer } from '../pipeline/tokenizer.ts';
import type { GenerateRequest, ModelInfo } from '../pipeline/types.ts';
import { admit, liveEntries, release } from './bullmq-fairness.ts';
import { RemoteJob, type Outcome } from './bullmq-job.ts';
import { isOwned, letGo, markDone, takeOwnership } from './bullmq-ownership.ts';
import {
  botConnection,
  BULL_PREFIX,
  CANCEL_CHANNEL,
  CANCELLED_PREFIX,
  decodeResult,
  decodeTokenizerPayload,
  FAILED_PREFIX,
  KEYS,
  priorityOf,
  QUEUE_NAME,
  type RemoteJobData,
  type RemoteProgress,
  type WorkerHeartbeat,
} from './bullmq-protocol.ts';
import {
  QueueRejection,
  type DeliveryRecord,
  type EnqueueExtras,
  type JobHandle,
  type JobQueue,
  type JobStatus,
  type ModelStatus,
  type QueuedJob,
} from './types.ts';

export interface BullQueueOptions {
  redisUrl: string;
  policy: GenerationPolicy;
  maxQueue: number;
  maxJobsPerUser: number;
  /** How long finished jobs wait in Redis for a bot to post them. */
  resultTtlMs: number;
  logger: Logger;
}

/** How often the bot reads its jobs' state from Redis. */
const POLL_MS = 250;
/** Worker heartbeats, leases and the scan for jobs without a bot need no per-poll freshness. */
const WORKER_REFRESH_MS = 1_000;
const LEASE_RENEW_MS = 1_000;
const SCAN_MS = 1_000;
const LEDGER_CHECK_MS = 10_000;
/** A bot that dies lets go of its jobs this long after its last renewal. */
const LEASE_MS = 5_000;
/** How long close() waits for outcomes being posted to be acknowledged. */
const POSTING_DRAIN_MS = 15_000;
/** A ledger entry without its BullMQ job is an enqueue that died halfway once it is this old. */
const ORPHAN_AGE_MS = 30_000;
const FOLLOWED_STATES = ['wait', 'prioritized', 'active', 'delayed', 'completed', 'failed'] as const;

/**
 * The bot's side of the BullMQ backend: jobs go to Redis (id = the interaction id, priority = the fair-order
 * tag), workers on any machine run them, and the bot follows them by polling: queue position, step progress,
 * the result or failure. Each job is followed by one bot at a time, the holder of its lease (see
 * bullmq-ownership.ts); jobs whose bot is gone are taken over by the next one, through recover(). While Redis
 * is unreachable enqueue refuses with 'unavailable' at once and the handles wait; everything resumes when it is back.
 */
export class BullJobQueue implements JobQueue {
  private readonly redis: Redis;
  /** Made once the connection is first ready: BullMQ's setup fails for good on a connection that is still connecting. */
  private bullQueue: Queue | undefined;
  private readonly jobs = new Map<string, RemoteJob>();
  private readonly botId = randomBytes(6).toString('base64url');
  private readonly log: Logger;
  private readonly timer: NodeJS.Timeout;
  private workers: WorkerHeartbeat[] = [];
  private readonly tokenizers = new TokenizerCache();
  private readonly lastRun = { workers: 0, leases: 0, scan: 0, ledger: 0 };
  private onRecovered: ((job: JobHandle, delivery: DeliveryRecord) => void) | undefined;
  private polling = false;
  private lastPollError: string | undefined;
  private reachable = true;
  private closed = false;

  constructor(private readonly options: BullQueueOptions) {
    this.log = options.logger.child({ component: 'bullmq-queue' });
    this.redis = botConnection(options.redisUrl);
    this.redis.on('error', (error: Error) => this.unreachable(error));
    this.redis.on('ready', () => {
      if (!this.reachable) this.log.info('Redis is reachable again');
      this.reachable = true;
      if (!this.bullQueue && !this.closed) {
        this.bullQueue = new Queue(QUEUE_NAME, { connection: this.redis, prefix: BULL_PREFIX, skipWaitingForReady: true });
        // The connection's own 'error' listener reports outages once; BullMQ repeats them here.
        this.bullQueue.on('error', () => {});
      }
    });
    this.timer = setInterval(() => void this.poll(), POLL_MS);
  }

  async enqueue(userId: string, options: ImagineOptions, extras: EnqueueExtras = {}): Promise<JobHandle> {
    if (this.closed) throw new QueueRejection('closed', 0);
    const policy = extras.policy ?? this.options.policy;
    const requests = await this.settledRequests(options, policy);
    if (this.redis.status !== 'ready' || !this.bullQueue) throw new QueueRejection('unavailable', 0);
    // BullMQ refuses ids that look like integers, as interaction ids (snowflakes) do.
    const jobId = `job-${extras.id ?? randomBytes(6).toString('base64url')}`;
    if (this.jobs.has(jobId)) throw new QueueRejection('duplicate', 0);

    let owned = false;
    try {
      // Taken before the job exists, so no other bot's scan can take it over in between.
      owned = (await takeOwnership(this.redis, jobId, this.botId, LEASE_MS)) === 'mine';
      if (!owned) throw new QueueRejection('duplicate', 0);
      const { guildId, queueShare } = extras;
      const admission = await admit(this.redis, { jobId, userId, jobKey: this.queue.toKey(jobId), ...this.options, guildId, queueShare });
      if (admission.verdict !== 'ok') throw this.rejection(admission.verdict, queueShare);
      const data: RemoteJobData = { userId, options, requests: requests && withoutPictures(requests), policy, ...(guildId === undefined ? {} : { guildId }), delivery: extras.delivery ?? null };
      const keepFor = { age: Math.ceil(this.options.resultTtlMs / 1000) };
      await this.queue.add('imagine', data, {
        jobId,
        priority: priorityOf(admission.tag),
        attempts: 1,
        removeOnComplete: keepFor,
        removeOnFail: keepFor,
      });
    } catch (error) {
      if (owned) await letGo(this.redis, jobId, this.botId).catch(() => undefined);
      if (error instanceof QueueRejection) throw error;
      this.log.warn({ jobId, error: error instanceof Error ? error.message : String(error) }, 'could not queue the job');
      await release(this.redis, jobId).catch(() => undefined);
      throw new QueueRejection('unavailable', 0);
    }
    const job = this.track(jobId, userId, options);
    await this.refresh([job]).catch(() => undefined);
    return job;
  }

  find(jobId: string): JobHandle | undefined {
    const job = this.jobs.get(jobId);
    return job?.phase === 'following' ? job : undefined;
  }

  async cancel(jobId: string, reason: CancelReason): Promise<boolean> {
    const followed = this.jobs.get(jobId);
    if (followed) return followed.cancel(reason);
    const state = await this.queue.getJobState(jobId);
    if (state === 'completed' || state === 'failed' || state === 'unknown') return false;
    await this.announceCancel(jobId, reason);
    return true;
  }

  async list(): Promise<QueuedJob[]> {
    if (this.redis.status !== 'ready') throw new QueueRejection('unavailable', 0);
    const [running, waiting] = await Promise.all([this.queue.getActive(), this.waitingOrder()]);
    const modelLoading = this.modelLoading();
    const listed: QueuedJob[] = running.map((job) => ({ ...describe(job.id!, job.data), status: runningStatus(job.progress, job.data.options.count) }));
    for (const [index, id] of waiting.entries()) {
      const job = await this.queue.getJob(id);
      if (job) listed.push({ ...describe(id, job.data), status: { state: 'waiting', position: index + 1, modelLoading } });
    }
    return listed;
  }

  executionProviders(): string[] {
    return [...new Set(this.workers.flatMap((worker) => (worker.executionProvider ? [worker.executionProvider] : [])))];
  }

  safetyChecked(): boolean {
    return this.workers.some((worker) => worker.safetyChecked);
  }

  /** From the workers' heartbeats: ready when one of them has its model loaded (all workers should run the same model). */
  modelStatus(): ModelStatus {
    const model = this.readyModel();
    return model ? { state: 'ready', model } : { state: 'loading' };
  }

  /** The models the workers announce (a ready worker's first; all workers should have the same ones). */
  offeredModels(): OfferedModels | undefined {
    const announcing = [...this.workers].sort((a, b) => Number(b.state === 'ready') - Number(a.state === 'ready'));
    return announcing.find((worker) => worker.models)?.models ?? undefined;
  }

  /** From Redis, where the workers publish the tokenizers of the models they offer (this process has no model files). */
  tokenizer(model: ModelInfo): Promise<ClipTokenizer> {
    const digest = this.workers.map((worker) => worker.tokenizers?.[model.name]).find((found) => found !== undefined);
    if (!digest) return Promise.reject(new Error(`no worker has published the tokenizer of ${model.name}`));
    return this.tokenizers.get(digest, async () => {
      const payload = await this.redis.get(KEYS.tokenizer(digest));
      if (payload === null) throw new Error(`the tokenizer of ${model.name} is no longer in Redis`);
      return ClipTokenizer.fromFiles(decodeTokenizerPayload(payload), `the tokenizer of ${model.name} from Redis`);
    });
  }

  /**
   * The job's requests, settled against the model the workers announce for it; null while no worker has announced
   * its models, and then the worker that takes the job settles them. Throws OptionError.
   */
  private async settledRequests(options: ImagineOptions, policy: GenerationPolicy): Promise<GenerateRequest[] | null> {
    const offered = this.offeredModels();
    if (!offered) {
      checkOptions(options);
      return null;
    }
    const model = offeredModel(offered, options.model);
    const requests = resolveRequests(options, policy, model);
    await checkPromptLengthIfPossible(requests[0], model, (info) => this.tokenizer(info), this.log);
    return requests;
  }

  recover(onJob: (job: JobHandle, delivery: DeliveryRecord) => void): void {
    this.onRecovered = onJob;
    this.lastRun.scan = 0;
    void this.poll();
  }

  /**
   * Lets go of the jobs being followed, so the next bot takes them over at once. Outcomes being posted are waited
   * for (up to 15 s, or graceMs if longer), so their "done" mark still reaches Redis and no bot posts them again.
   */
  async close(graceMs: number): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    const deadline = Date.now() + Math.max(graceMs, POSTING_DRAIN_MS);
    for (const job of this.jobs.values()) {
      if (job.phase !== 'following') continue;
      job.detach('the bot is shutting down; the job stays queued for the next bot');
      await this.leave(job);
    }
    while ([...this.jobs.values()].some((job) => job.phase === 'settled') && Date.now() < deadline) await sleep(50);
    for (const job of this.jobs.values()) await this.leave(job);
    await this.bullQueue?.close().catch(() => undefined);
    await this.redis.quit().catch(() => this.redis.disconnect());
  }

  private rejection(verdict: 'duplicate' | 'queue_full' | 'user_limit' | 'server_limit', queueShare: number | undefined): QueueRejection {
    if (verdict === 'queue_full') return new QueueRejection(verdict, this.options.maxQueue);
    if (verdict === 'server_limit') return new QueueRejection(verdict, queueShare ?? 0);
    if (verdict === 'user_limit') return new QueueRejection(verdict, this.options.maxJobsPerUser);
    return new QueueRejection(verdict, 0);
  }

  private track(jobId: string, userId: string, options: ImagineOptions, possiblyPosted = false): RemoteJob {
    const status: JobStatus = { state: 'waiting', position: 1, modelLoading: this.modelLoading() };
    const job = new RemoteJob(jobId, userId, options, status, possiblyPosted, {
      cancel: (target, reason) => this.requestCancel(target, reason),
      acknowledge: (target) => this.acknowledge(target),
    });
    this.jobs.set(jobId, job);
    return job;
  }

  private async leave(job: RemoteJob): Promise<void> {
    this.jobs.delete(job.id);
    if (this.redis.status === 'ready') await letGo(this.redis, job.id, this.botId).catch(() => undefined);
  }

  private get queue(): Queue {
    if (!this.bullQueue) throw new Error('Redis has not been reachable yet');
    return this.bullQueue;
  }

  private readyModel(): ModelInfo | undefined {
    return this.workers.find((worker) => worker.state === 'ready' && worker.model)?.model ?? undefined;
  }

  private modelLoading(): boolean {
    return !this.readyModel() && this.workers.some((worker) => worker.state === 'loading');
  }

  private unreachable(error: unknown): void {
    if (!this.reachable) return;
    this.reachable = false;
    this.log.warn({ error: error instanceof Error ? error.message : String(error) }, 'Redis is unreachable: new jobs are refused until it is back');
  }

  private async poll(): Promise<void> {
    if (this.polling || this.closed || this.redis.status !== 'ready' || !this.bullQueue) return;
    this.polling = true;
    try {
      const due = (task: keyof typeof this.lastRun, everyMs: number) => {
        if (Date.now() - this.lastRun[task] < everyMs) return false;
        this.lastRun[task] = Date.now();
        return true;
      };
      if (due('workers', WORKER_REFRESH_MS)) await this.refreshWorkers();
      if (due('leases', LEASE_RENEW_MS)) await this.keepLeases();
      if (this.onRecovered && due('scan', SCAN_MS)) await this.takeOverOrphans(this.onRecovered);
      await this.refresh([...this.jobs.values()]);
      if (due('ledger', LEDGER_CHECK_MS)) await this.checkLedger();
    } catch (error) {
      this.pollFailed(error);
    } finally {
      this.polling = false;
    }
  }

  /** An outage is logged once; any other failure once per distinct message, not on every poll. */
  private pollFailed(error: unknown): void {
    if (this.redis.status !== 'ready') return this.unreachable(error);
    const message = error instanceof Error ? error.message : String(error);
    if (message === this.lastPollError) return;
    this.lastPollError = message;
    this.log.warn({ error: message }, 'reading the jobs from Redis failed');
  }

  private async refreshWorkers(): Promise<void> {
    const ids = await this.redis.smembers(KEYS.workers);
    if (ids.length === 0) {
      this.workers = [];
      return;
    }
    const beats = await this.redis.mget(ids.map((id) => KEYS.worker(id)));
    const gone = ids.filter((_, index) => beats[index] === null);
    if (gone.length > 0) await this.redis.srem(KEYS.workers, ...gone);
    this.workers = beats.filter((beat): beat is string => beat !== null).map((beat) => JSON.parse(beat) as WorkerHeartbeat);
  }

  /**
   * Takes over the jobs in Redis that no bot follows and none has posted: left by a bot that stopped or died
   * (its lease lapsed), or found again after an outage. One job at a time: finished ones carry their images.
   */
  private async takeOverOrphans(onJob: (job: JobHandle, delivery: DeliveryRecord) => void): Promise<void> {
    const found: { job: RemoteJob; delivery: DeliveryRecord }[] = [];
    try {
      for (const id of await this.queue.getRanges([...FOLLOWED_STATES], 0, -1, true)) {
        if (this.jobs.has(id) || (await isOwned(this.redis, id))) continue;
        const data = (await this.queue.getJob(id))?.data as RemoteJobData | undefined;
        if (!data?.delivery || (await takeOwnership(this.redis, id, this.botId, LEASE_MS)) !== 'mine') continue;
        const possiblyPosted = (await this.redis.exists(KEYS.posting(id))) === 1;
        found.push({ job: this.track(id, data.userId, data.options, possiblyPosted), delivery: data.delivery });
      }
    } finally {
      // Whatever was taken is handed over, even when the scan broke off: a job followed but never handed over would never be posted.
      if (found.length > 0) {
        this.log.info({ jobs: found.length }, 'took over jobs that no running bot follows');
        await this.refresh(found.map(({ job }) => job)).catch((error: unknown) => this.pollFailed(error));
        for (const { job, delivery } of found) onJob(job, delivery);
      }
    }
  }

  /** Reads the jobs' state: position while waiting, progress while running, the outcome once finished. */
  private async refresh(jobs: RemoteJob[]): Promise<void> {
    const following = jobs.filter((job) => job.phase === 'following');
    if (following.length === 0) return;
    const waiting = await this.waitingOrder();
    const modelLoading = this.modelLoading();
    for (const job of following) {
      if (job.cancelPending) await this.sendCancel(job);
      const stored = await this.queue.getJob(job.id);
      const position = waiting.indexOf(job.id);
      if (!stored) {
        await this.settle(job, await this.lostOutcome(job));
      } else if (stored.finishedOn) {
        // A job taken over after it finished shows its last progress until its result replaces it.
        if (stored.progress) job.setStatus(runningStatus(stored.progress, job.options.count));
        await this.settle(job, outcomeOf(stored, this.log));
      } else if (position >= 0) {
        job.setStatus({ state: 'waiting', position: position + 1, modelLoading });
      } else if (stored.processedOn) {
        job.setStatus(await this.withPreview(runningStatus(stored.progress, job.options.count), stored.progress, job));
      }
    }
  }

  /** The status with the preview its progress announces: the one the job shows already, else fetched from Redis. */
  private async withPreview(status: JobStatus, progress: unknown, job: RemoteJob): Promise<JobStatus> {
    const step = (progress as Partial<RemoteProgress> | null)?.previewStep;
    if (status.state !== 'running' || typeof step !== 'number') return status;
    const shown = job.status();
    if (shown.state === 'running' && shown.image === status.image && shown.preview?.step === step) return { ...status, preview: shown.preview };
    const stored = await this.redis.hgetallBuffer(KEYS.preview(job.id));
    const jpeg = stored.jpeg;
    if (!jpeg || jpeg.length === 0) return status;
    return { ...status, preview: { step: Number(stored.step), totalSteps: Number(stored.totalSteps), jpeg: new Uint8Array(jpeg) } };
  }

  private async settle(job: RemoteJob, outcome: Outcome): Promise<void> {
    await this.redis.set(KEYS.posting(job.id), this.botId, 'PX', this.options.resultTtlMs);
    await release(this.redis, job.id);
    job.settle(outcome);
  }

  /** Renews this bot's leases, retries "done" marks that failed, and lets go of jobs another bot took over meanwhile. */
  private async keepLeases(): Promise<void> {
    for (const job of [...this.jobs.values()]) {
      if (job.delivered) {
        await this.markDelivered(job);
        continue;
      }
      const ownership = await takeOwnership(this.redis, job.id, this.botId, LEASE_MS);
      if (ownership !== 'mine' && job.phase === 'following') {
        this.log.warn({ jobId: job.id, ownership }, 'another bot took this job over (this one stalled for longer than its lease)');
        job.detach('another bot process follows this job now');
        this.jobs.delete(job.id);
      }
    }
  }

  /** Waiting job ids in the order workers take them: the plain wait list (oldest first), then by priority. */
  private async waitingOrder(): Promise<string[]> {
    const [plain, prioritized] = await Promise.all([
      this.queue.getRanges(['wait'], 0, -1, true),
      this.queue.getRanges(['prioritized'], 0, -1, true),
    ]);
    return [...plain, ...prioritized];
  }

  private async lostOutcome(job: RemoteJob): Promise<Outcome> {
    // Cancelled here, or from another bot process (which removed it while it waited).
    const cancelled = job.cancelRequested ?? (await this.redis.get(KEYS.cancel(job.id)));
    if (cancelled) return { error: new JobCancelledError(cancelled === 'shutdown' ? 'shutdown' : 'user') };
    return { error: new JobFailedError('The job was lost from the queue (its Redis data is gone). Please try again.') };
  }

  /** Never rejects: while Redis is unreachable the mark is retried with the lease renewals. */
  private async acknowledge(job: RemoteJob): Promise<void> {
    if (job.phase !== 'settled') return;
    job.delivered = true;
    await this.markDelivered(job).catch((error: unknown) => this.unreachable(error));
  }

  private async markDelivered(job: RemoteJob): Promise<void> {
    await markDone(this.redis, job.id, this.options.resultTtlMs);
    job.phase = 'done';
    this.jobs.delete(job.id);
    await this.queue.remove(job.id);
  }

  private requestCancel(job: RemoteJob, reason: CancelReason): boolean {
    if (job.phase !== 'following' || job.cancelRequested) return false;
    job.cancelRequested = reason;
    job.cancelPending = true;
    void this.sendCancel(job);
    return true;
  }

  /**
   * A waiting job is removed at once; a running one is flagged and announced, and its worker stops within a
   * step and fails it as cancelled. Either way the next poll sees the outcome.
   */
  private async sendCancel(job: RemoteJob): Promise<void> {
    const reason = job.cancelRequested;
    if (!reason || !job.cancelPending || this.redis.status !== 'ready' || !this.bullQueue) return;
    try {
      if (await this.announceCancel(job.id, reason)) await this.settle(job, { error: new JobCancelledError(reason) });
      job.cancelPending = false;
    } catch (error) {
      this.unreachable(error);
    }
  }

  /**
   * Tells the job's worker (through the key it reads before each image, and the announcement) to stop it, and removes
   * it if it is still waiting. Whichever bot follows the job reads the key when it finds the job failed or gone.
   * Returns whether the waiting job was removed.
   */
  private async announceCancel(jobId: string, reason: CancelReason): Promise<boolean> {
    await this.redis.set(KEYS.cancel(jobId), reason, 'PX', this.options.resultTtlMs);
    await this.redis.publish(CANCEL_CHANNEL, jobId);
    const state = await this.queue.getJobState(jobId);
    return (state === 'waiting' || state === 'prioritized' || state === 'delayed') && (await this.queue.remove(jobId)) === 1;
  }

  /** Drops ledger entries of jobs that finished without a worker or bot releasing them (a crash), so limits stay right. */
  private async checkLedger(): Promise<void> {
    for (const entry of await liveEntries(this.redis)) {
      const state = await this.queue.getJobState(entry.jobId);
      const orphan = state === 'unknown' && Date.now() - entry.admittedAt > ORPHAN_AGE_MS;
      if (orphan || state === 'completed' || state === 'failed') await release(this.redis, entry.jobId);
    }
  }
}

/** A finished job's images, or what its user is told (the error policy's: internal reasons are only logged). */
function outcomeOf(job: Job, log: Logger): Outcome {
  const reason = job.failedReason;
  if (reason) {
    if (reason.startsWith(CANCELLED_PREFIX)) {
      return { error: new JobCancelledError(reason.slice(CANCELLED_PREFIX.length) === 'shutdown' ? 'shutdown' : 'user') };
    }
    if (reason.startsWith(FAILED_PREFIX)) return { error: new JobFailedError(reason.slice(FAILED_PREFIX.length)) };
    if (/stalled more than allowable limit/i.test(reason)) {
      return { error: new JobFailedError('The workers that took this job kept stopping (crashed or lost their connection), so it was given up.') };
    }
    // BullMQ's own reasons (a lost lock, say): internal.
    return { error: failureForUser(new Error(reason), job.id ?? '', log) };
  }
  try {
    return { result: decodeResult(job.returnvalue) };
  } catch (error) {
    return { error: failureForUser(new Error(`the worker's result could not be read: ${(error as Error).message}`), job.id ?? '', log) };
  }
}

function describe(id: string, data: RemoteJobData): Omit<QueuedJob, 'status'> {
  return { id, userId: data.userId, guildId: data.guildId, prompt: data.options.prompt };
}

function runningStatus(progress: unknown, count: number): JobStatus {
  const value = progress as Partial<RemoteProgress> | null;
  if (!value || typeof value !== 'object' || typeof value.step !== 'number') {
    return { state: 'running', image: 1, images: count, step: 0, totalSteps: 0 };
  }
  const { image = 1, images = count, step, totalSteps = 0, loadingModel } = value;
  return { state: 'running', image, images, step, totalSteps, ...(typeof loadingModel === 'string' ? { loadingModel } : {}) };
}
