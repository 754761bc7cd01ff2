import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { ModelInfo } from '../pipeline/types.ts';
import { admit, liveEntries, release } from './bullmq-fairness.ts';
import { RemoteJob, type Outcome } from './bullmq-job.ts';
import {
  BULL_PREFIX,
  CANCEL_CHANNEL,
  CANCELLED_PREFIX,
  KEYS,
  QUEUE_NAME,
  botConnection,
  decodeResult,
  priorityOf,
  type RemoteJobData,
  type RemoteProgress,
  type WorkerHeartbeat,
} from './bullmq-protocol.ts';
import { checkOptions, resolveRequests } from './generation-policy.ts';
import {
  JobCancelledError,
  JobFailedError,
  QueueRejection,
  type CancelReason,
  type DeliveryRecord,
  type EnqueueExtras,
  type GenerationPolicy,
  type ImagineOptions,
  type JobHandle,
  type JobQueue,
  type JobStatus,
  type ModelStatus,
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
/** Worker heartbeats and the ledger need no per-poll freshness. */
const WORKER_REFRESH_MS = 1_000;
const LEDGER_CHECK_MS = 10_000;
/** A ledger entry without its BullMQ job is an enqueue that died halfway once it is this old. */
const ORPHAN_AGE_MS = 30_000;
/** The right to post a result: renewed on every poll while posting, free for the next bot soon after this one dies. */
const CLAIM_LEASE_MS = 10_000;

const CLAIM = `
local value = redis.call('GET', KEYS[1])
local mine = 'claimed:' .. ARGV[1]
if value == false or value == mine then
  redis.call('SET', KEYS[1], mine, 'PX', ARGV[2])
  return 'won'
end
if value == 'done' then return 'done' end
return 'held'
`;

/**
 * The bot's side of the BullMQ backend: jobs go to Redis (id = the interaction id, priority = the fair-order
 * tag), workers on any machine run them, and the bot follows them by polling: queue position, step progress,
 * the result or failure. Nothing is lost when the bot restarts: jobs and their delivery records stay in
 * Redis until a bot has posted them, and recover() hands them to the next bot. While Redis is unreachable
 * enqueue refuses with 'unavailable' at once and the handles wait; everything resumes when it is back.
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
  private lastWorkerRefresh = 0;
  private lastLedgerCheck = 0;
  private onRecovered: ((job: JobHandle, delivery: DeliveryRecord) => void) | undefined;
  private recoveryDue = true;
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
      this.recoveryDue = true;
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
    const model = this.readyModel();
    if (model) resolveRequests(options, this.options.policy, model);
    else checkOptions(options);
    if (this.redis.status !== 'ready' || !this.bullQueue) throw new QueueRejection('unavailable', 0);
    // BullMQ refuses ids that look like integers, as interaction ids (snowflakes) do.
    const jobId = `job-${extras.id ?? randomBytes(6).toString('base64url')}`;
    if (this.jobs.has(jobId)) throw new QueueRejection('duplicate', 0);

    try {
      const admission = await admit(this.redis, { jobId, userId, jobKey: this.queue.toKey(jobId), ...this.options });
      if (admission.verdict !== 'ok') throw this.rejection(admission.verdict);
      const data: RemoteJobData = { userId, options, policy: this.options.policy, delivery: extras.delivery ?? null };
      const keepFor = { age: Math.ceil(this.options.resultTtlMs / 1000) };
      await this.queue.add('imagine', data, {
        jobId,
        priority: priorityOf(admission.tag),
        attempts: 1,
        removeOnComplete: keepFor,
        removeOnFail: keepFor,
      });
    } catch (error) {
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
    return job && (job.phase === 'tracking' || job.phase === 'finished') ? job : undefined;
  }

  /** From the workers' heartbeats: ready when one of them has its model loaded (all workers should run the same model). */
  modelStatus(): ModelStatus {
    const model = this.readyModel();
    return model ? { state: 'ready', model } : { state: 'loading' };
  }

  recover(onJob: (job: JobHandle, delivery: DeliveryRecord) => void): void {
    this.onRecovered = onJob;
    this.recoveryDue = true;
    void this.poll();
  }

  async close(graceMs: number): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    for (const job of this.jobs.values()) job.detach('the bot is shutting down; the job stays queued for the next bot');
    // Results this bot is posting right now get graceMs to finish, so their acknowledgement still reaches Redis.
    const deadline = Date.now() + graceMs;
    while ([...this.jobs.values()].some((job) => job.phase === 'claimed') && Date.now() < deadline) await sleep(50);
    await this.bullQueue?.close().catch(() => undefined);
    await this.redis.quit().catch(() => this.redis.disconnect());
  }

  private rejection(verdict: 'duplicate' | 'queue_full' | 'user_limit'): QueueRejection {
    if (verdict === 'queue_full') return new QueueRejection(verdict, this.options.maxQueue);
    if (verdict === 'user_limit') return new QueueRejection(verdict, this.options.maxJobsPerUser);
    return new QueueRejection(verdict, 0);
  }

  private track(jobId: string, userId: string, options: ImagineOptions): RemoteJob {
    const job = new RemoteJob(jobId, userId, options, { state: 'waiting', position: 1, modelLoading: this.modelLoading() }, {
      cancel: (target, reason) => this.cancel(target, reason),
      acknowledge: (target) => this.acknowledge(target),
    });
    this.jobs.set(jobId, job);
    return job;
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
      const now = Date.now();
      if (now - this.lastWorkerRefresh >= WORKER_REFRESH_MS) {
        await this.refreshWorkers();
        this.lastWorkerRefresh = now;
      }
      if (this.recoveryDue && this.onRecovered) await this.recoverJobs(this.onRecovered);
      await this.refresh([...this.jobs.values()]);
      await this.keepClaims();
      if (now - this.lastLedgerCheck >= LEDGER_CHECK_MS) {
        await this.checkLedger();
        this.lastLedgerCheck = now;
      }
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

  /** Takes over the jobs in Redis that no bot has posted yet (a restart, or Redis back after an outage). */
  private async recoverJobs(onJob: (job: JobHandle, delivery: DeliveryRecord) => void): Promise<void> {
    const ids = await this.queue.getRanges(['wait', 'prioritized', 'active', 'delayed', 'completed', 'failed'], 0, -1, true);
    const found: { id: string; data: RemoteJobData & { delivery: DeliveryRecord } }[] = [];
    // One job at a time: finished ones carry their images.
    for (const id of ids) {
      if (this.jobs.has(id) || (await this.redis.get(KEYS.delivery(id))) === 'done') continue;
      const data = (await this.queue.getJob(id))?.data as RemoteJobData | undefined;
      if (data?.delivery) found.push({ id, data: { ...data, delivery: data.delivery } });
    }
    // From here on nothing may fail halfway: a job tracked but not handed over would never be posted.
    this.recoveryDue = false;
    if (found.length === 0) return;
    this.log.info({ jobs: found.length }, 'recovered jobs queued before this bot started');
    const jobs = found.map(({ id, data }) => this.track(id, data.userId, data.options));
    await this.refresh(jobs).catch((error: unknown) => this.pollFailed(error));
    jobs.forEach((job, index) => onJob(job, found[index].data.delivery));
  }

  /** Reads the jobs' state: position while waiting, progress while running, the outcome once finished. */
  private async refresh(jobs: RemoteJob[]): Promise<void> {
    const active = jobs.filter((job) => job.phase === 'tracking' || job.phase === 'finished');
    const waiting = active.length > 0 ? await this.waitingOrder() : [];
    const modelLoading = this.modelLoading();
    for (const job of active) {
      if (job.phase === 'tracking') {
        if (job.cancelPending) await this.sendCancel(job);
        const stored = await this.queue.getJob(job.id);
        const position = waiting.indexOf(job.id);
        if (!stored) job.finish(this.lostOutcome(job));
        else if (stored.finishedOn) {
          // A job recovered after it finished shows its last progress until its result replaces it.
          if (stored.progress) job.setStatus(runningStatus(stored.progress, job));
          job.finish(outcomeOf(stored));
        }
        else if (position >= 0) job.setStatus({ state: 'waiting', position: position + 1, modelLoading });
        else if (stored.processedOn) job.setStatus(runningStatus(stored.progress, job));
      }
      if (job.phase === 'finished') await this.claim(job);
    }
  }

  /** Renews the leases of the results this bot is posting, and retries marks of posted ones that failed. */
  private async keepClaims(): Promise<void> {
    for (const job of this.jobs.values()) {
      if (job.phase === 'claimed') await (job.delivered ? this.markDelivered(job) : this.renewClaim(job));
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

  private lostOutcome(job: RemoteJob): Outcome {
    if (job.cancelRequested) return { error: new JobCancelledError(job.cancelRequested) };
    return { error: new JobFailedError('The job was lost from the queue (its Redis data is gone). Please try again.') };
  }

  /** Only one bot posts a result: the first to claim it; the others let go once it is marked done. */
  private async claim(job: RemoteJob): Promise<void> {
    const verdict = await this.redis.eval(CLAIM, 1, KEYS.delivery(job.id), this.botId, CLAIM_LEASE_MS);
    if (verdict === 'won') {
      await release(this.redis, job.id);
      job.settle();
    } else if (verdict === 'done') {
      job.detach('another bot process posted this job');
      this.jobs.delete(job.id);
    }
  }

  private async renewClaim(job: RemoteJob): Promise<void> {
    await this.redis.eval(CLAIM, 1, KEYS.delivery(job.id), this.botId, CLAIM_LEASE_MS);
  }

  /** Never rejects: while Redis is unreachable the mark is retried on every poll (and the claim kept). */
  private async acknowledge(job: RemoteJob): Promise<void> {
    if (job.phase !== 'claimed') return;
    job.delivered = true;
    await this.markDelivered(job).catch((error: unknown) => this.unreachable(error));
  }

  private async markDelivered(job: RemoteJob): Promise<void> {
    await this.redis.set(KEYS.delivery(job.id), 'done', 'PX', this.options.resultTtlMs);
    job.phase = 'done';
    this.jobs.delete(job.id);
    await this.queue.remove(job.id);
  }

  private cancel(job: RemoteJob, reason: CancelReason): boolean {
    if (job.phase !== 'tracking' || job.cancelRequested) return false;
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
      await this.redis.set(KEYS.cancel(job.id), reason, 'PX', this.options.resultTtlMs);
      await this.redis.publish(CANCEL_CHANNEL, job.id);
      const state = await this.queue.getJobState(job.id);
      if ((state === 'waiting' || state === 'prioritized' || state === 'delayed') && (await this.queue.remove(job.id)) === 1) {
        job.finish({ error: new JobCancelledError(reason) });
      }
      job.cancelPending = false;
    } catch (error) {
      this.unreachable(error);
    }
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

function outcomeOf(job: Job): Outcome {
  if (job.failedReason) {
    if (job.failedReason.startsWith(CANCELLED_PREFIX)) {
      const reason = job.failedReason.slice(CANCELLED_PREFIX.length);
      return { error: new JobCancelledError(reason === 'shutdown' ? 'shutdown' : 'user') };
    }
    if (/stalled more than allowable limit/i.test(job.failedReason)) {
      return { error: new JobFailedError('The workers that took this job kept stopping (crashed or lost their connection), so it was given up.') };
    }
    return { error: new JobFailedError(job.failedReason) };
  }
  try {
    return { result: decodeResult(job.returnvalue) };
  } catch (error) {
    return { error: new JobFailedError(`The worker's result could not be read: ${(error as Error).message}`) };
  }
}

function runningStatus(progress: unknown, job: RemoteJob): JobStatus {
  const value = progress as Partial<RemoteProgress> | null;
  if (!value || typeof value !== 'object' || typeof value.step !== 'number') {
    return { state: 'running', image: 1, images: job.options.count, step: 0, totalSteps: 0 };
  }
  return { state: 'running', image: value.image ?? 1, images: value.images ?? job.options.count, step: value.step, totalSteps: value.totalSteps ?? 0 };
}
