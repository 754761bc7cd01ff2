import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { WaitingError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { HealthStatus } from '../health/health-file.ts';
import type { PreviewImage } from '../image/preview.ts';
import { failureForUser, type CancelReason } from '../jobs/errors.ts';
import { resolveRequests, withPictures } from '../jobs/options.ts';
import { runJob, type ImageGenerator } from '../jobs/runner.ts';
import { modelForJob, offeredModels, type ModelCatalog } from '../models/catalog.ts';
import { readTokenizerFiles } from '../pipeline/tokenizer.ts';
import type { ModelInfo } from '../pipeline/types.ts';
import { markStarted, release } from '../queue/bullmq-fairness.ts';
import {
  BULL_PREFIX,
  CANCEL_CHANNEL,
  cancelledReason,
  encodeResult,
  failedReason,
  KEYS,
  PREVIEW_TTL_MS,
  QUEUE_NAME,
  TOKENIZER_TTL_S,
  tokenizerPayload,
  workerConnection,
  type RemoteJobData,
  type RemoteJobResult,
  type RemoteProgress,
  type WorkerHeartbeat,
} from '../queue/bullmq-protocol.ts';

export interface RemoteWorkerOptions {
  redisUrl: string;
  generator: ImageGenerator;
  /** The models jobs may name (the generator must switch between them, see ModelSwitcher); only the loaded one when absent. */
  catalog?: ModelCatalog;
  /** Lock time of a running job: a worker that stops renewing it (killed, cut off) loses the job after this long. */
  stalledJobTimeoutMs: number;
  /** What the generator runs on, announced in the heartbeat (for /info). */
  executionProvider?: string;
  /** The generator's images go through the safety checker, announced in the heartbeat. */
  safetyChecked?: boolean;
  logger: Logger;
}

const HEARTBEAT_MS = 5_000;
const HEARTBEAT_TTL_S = 15;
/** Step progress goes to Redis at most this often (the bot polls it; Discord edits are throttled anyway). */
const PROGRESS_INTERVAL_MS = 250;
/** How many times a job may lose its worker before it is failed instead of run again. */
const MAX_STALLS = 2;
/** How long close() waits, after the grace time, for the job to go back to the queue. */
const FORCE_CLOSE_MS = 10_000;

interface RunningJob {
  id: string;
  controller: AbortController;
  /** Why the generation was aborted: the user's cancel, or this worker shutting down (the job goes back to the queue). */
  stop?: CancelReason | 'requeue';
}

/**
 * One GPU's worth of work: takes jobs from the BullMQ queue one at a time, runs them on the generator (the model
 * is loaded once), reports step progress, and returns the images as the job's value; it holds no Discord token.
 * A cancel published by the bot aborts the running job within one step. On close it finishes the running job
 * within the grace time or puts it back in the queue for another worker.
 */
export class RemoteWorker {
  /** Resolves once the model is loaded and jobs are being taken; rejects when the model cannot load. */
  readonly ready: Promise<ModelInfo>;
  private readonly id = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  private readonly redis: Redis;
  private readonly subscriber: Redis;
  private readonly log: Logger;
  private worker: Worker | undefined;
  private workerRedis: Redis | undefined;
  private model: ModelInfo | undefined;
  private running: RunningJob | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private closing = false;
  private reachable = true;
  /** Each offered model's tokenizer as published, by model folder (read once). */
  private readonly tokenizers = new Map<string, Promise<{ digest: string; payload: string }>>();
  /** When a heartbeat last reached Redis (ms since the epoch); 0 before the first one. */
  private lastHeartbeatAt = 0;

  constructor(private readonly options: RemoteWorkerOptions) {
    this.log = options.logger.child({ workerId: this.id });
    this.redis = workerConnection(options.redisUrl);
    this.redis.on('error', (error: Error) => this.unreachable(error));
    this.redis.on('ready', () => {
      if (!this.reachable) this.log.info('Redis is reachable again');
      this.reachable = true;
    });
    this.subscriber = this.redis.duplicate();
    this.subscriber.on('error', () => {});
    this.subscriber.on('message', (_channel: string, jobId: string) => this.abortIfRunning(jobId, 'user'));
    void this.subscriber.subscribe(CANCEL_CHANNEL).catch((error: unknown) => this.log.warn({ error: String(error) }, 'could not subscribe to cancels'));
    void this.beat();
    this.heartbeat = setInterval(() => void this.beat(), HEARTBEAT_MS);
    this.ready = options.generator.ready.then((model) => {
      this.model = model;
      if (!this.closing) this.startTaking();
      void this.beat();
      return model;
    });
    this.ready.catch(() => undefined);
  }

  /** Stops taking jobs; the running one may finish for graceMs, then goes back to the queue for another worker. */
  async close(graceMs: number): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    clearInterval(this.heartbeat);
    const closed = this.worker?.close() ?? Promise.resolve();
    const finished = await Promise.race([closed.then(() => true), sleep(graceMs, false)]);
    if (!finished && this.running) {
      this.log.info({ jobId: this.running.id }, 'shutting down: the running job goes back to the queue');
      this.running.stop = 'requeue';
      this.running.controller.abort();
    }
    // While Redis is unreachable nothing here can finish; the job's lock then lapses and another worker takes it.
    await Promise.race([closed, sleep(FORCE_CLOSE_MS)]);
    if (this.redis.status === 'ready') {
      await this.redis.multi().del(KEYS.worker(this.id)).srem(KEYS.workers, this.id).exec().catch(() => undefined);
    }
    for (const connection of [this.subscriber, this.redis, this.workerRedis]) connection?.disconnect();
  }

  private startTaking(): void {
    const connection = workerConnection(this.options.redisUrl);
    this.workerRedis = connection;
    const timeout = this.options.stalledJobTimeoutMs;
    this.worker = new Worker<RemoteJobData, RemoteJobResult>(QUEUE_NAME, (job, token) => this.process(job, token), {
      connection,
      prefix: BULL_PREFIX,
      concurrency: 1,
      // A dead worker's job is found within timeout (its lock lapses) plus half of it (the next check).
      lockDuration: timeout,
      stalledInterval: Math.max(500, Math.round(timeout / 2)),
      maxStalledCount: MAX_STALLS,
    });
    this.worker.on('error', (error) => {
      if (this.reachable) this.log.warn({ error: error.message }, 'BullMQ worker error');
    });
    this.worker.on('completed', (job) => this.log.info({ jobId: job.id }, 'job completed'));
    this.worker.on('failed', (job, error) => this.log.info({ jobId: job?.id, reason: error.message }, 'job failed'));
    this.log.info({ model: this.model?.name }, 'taking jobs');
  }

  /** Logged once per outage; BullMQ reconnects by itself and the running job goes on. */
  private unreachable(error: Error): void {
    if (!this.reachable) return;
    this.reachable = false;
    this.log.warn({ error: error.message }, 'Redis is unreachable: no new jobs until it is back');
  }

  private async beat(): Promise<void> {
    const models = offeredModels(this.options.catalog, this.model) ?? null;
    const beat: WorkerHeartbeat = {
      state: this.model ? 'ready' : 'loading',
      model: this.model ?? null,
      models,
      tokenizers: await this.publishTokenizers(models?.models ?? []),
      host: hostname(),
      pid: process.pid,
      executionProvider: this.options.executionProvider,
      safetyChecked: this.options.safetyChecked,
    };
    // close() removes the heartbeat: one that was being made meanwhile must not bring it back.
    if (this.closing) return;
    this.redis
      .multi()
      .set(KEYS.worker(this.id), JSON.stringify(beat), 'EX', HEARTBEAT_TTL_S)
      .sadd(KEYS.workers, this.id)
      .exec()
      .then(() => (this.lastHeartbeatAt = Date.now()))
      .catch((error: unknown) => this.log.debug({ error: String(error) }, 'heartbeat failed'));
  }

  /**
   * Keeps each offered model's tokenizer files in Redis (renewed every heartbeat, written when missing) for the bots,
   * which have no model files; returns the digests of those that are there.
   */
  private async publishTokenizers(models: readonly ModelInfo[]): Promise<Record<string, string>> {
    const digests: Record<string, string> = {};
    for (const model of models) {
      let published = this.tokenizers.get(model.dir);
      if (!published) {
        published = readTokenizerFiles(join(model.dir, 'tokenizer')).then(tokenizerPayload);
        this.tokenizers.set(model.dir, published);
      }
      try {
        const { digest, payload } = await published;
        const key = KEYS.tokenizer(digest);
        if ((await this.redis.expire(key, TOKENIZER_TTL_S)) === 0) await this.redis.set(key, payload, 'EX', TOKENIZER_TTL_S);
        digests[model.name] = digest;
      } catch (error) {
        this.log.debug({ model: model.name, error: String(error) }, 'could not publish the tokenizer');
      }
    }
    return digests;
  }

  /**
   * Healthy while its heartbeat reaches Redis, i.e. while the bot counts this worker in (a heartbeat lives
   * HEARTBEAT_TTL_S). Loading the model is healthy: the worker is doing what it should.
   */
  health(): HealthStatus {
    const work = this.closing ? 'stopping' : this.model ? `model ${this.model.name} loaded` : 'loading the model';
    if (this.lastHeartbeatAt === 0) return { healthy: false, detail: `no heartbeat has reached Redis yet; ${work}` };
    const age = Date.now() - this.lastHeartbeatAt;
    if (this.closing || age > HEARTBEAT_TTL_S * 1000) {
      return { healthy: false, detail: `last heartbeat reached Redis ${Math.round(age / 1000)} s ago; ${work}` };
    }
    return { healthy: true, detail: `heartbeat reached Redis ${Math.round(age / 1000)} s ago; ${work}` };
  }

  private abortIfRunning(jobId: string, reason: CancelReason): void {
    if (this.running?.id !== jobId || this.running.stop) return;
    this.running.stop = reason;
    this.running.controller.abort();
  }

  private async process(job: Job<RemoteJobData, RemoteJobResult>, token: string | undefined): Promise<RemoteJobResult> {
    const jobId = job.id ?? '';
    const running: RunningJob = { id: jobId, controller: new AbortController() };
    this.running = running;
    this.log.info({ jobId, userId: job.data.userId, stalls: job.stalledCounter }, 'job started');
    let requeued = false;
    try {
      await markStarted(this.redis, jobId);
      return await this.generate(job, running);
    } catch (error) {
      if (running.stop === 'requeue' && token) {
        await job.moveToWait(token);
        requeued = true;
        throw new WaitingError();
      }
      if (running.stop && running.stop !== 'requeue') throw new Error(cancelledReason(running.stop));
      throw new Error(failedReason(failureForUser(error, jobId, this.log).message));
    } finally {
      this.running = undefined;
      await this.redis.del(KEYS.preview(jobId)).catch(() => undefined);
      if (!requeued) await release(this.redis, jobId).catch(() => undefined);
    }
  }

  private async generate(job: Job<RemoteJobData, RemoteJobResult>, running: RunningJob): Promise<RemoteJobResult> {
    const { options, policy } = job.data;
    // Also refuses a model this worker does not have, settled requests or not.
    const model = modelForJob(options.model, this.options.catalog, this.model);
    if (!model) throw new Error('RemoteWorker took a job before its model was loaded');
    const requests = job.data.requests ? withPictures(job.data.requests, options) : resolveRequests(options, policy, model);
    let lastReport = 0;
    let lastPreview: PreviewImage | undefined;
    // In order: a preview's bytes are in Redis before the progress that announces it.
    let reports = Promise.resolve();
    const previewKey = KEYS.preview(running.id);
    const result = await runJob(requests, options.model, this.options.generator, {
      previews: policy.previews,
      stepsVideo: options.stepsVideo,
      signal: running.controller.signal,
      // The published cancel may have gone out before this worker took the job (or while it was reconnecting).
      beforeImage: async () => {
        const cancelled = await this.redis.get(KEYS.cancel(running.id));
        if (cancelled) this.abortIfRunning(running.id, cancelled === 'shutdown' ? 'shutdown' : 'user');
      },
      onProgress: ({ preview, ...progress }) => {
        const newPreview = preview !== undefined && preview !== lastPreview;
        const milestone = progress.step === 0 || progress.step === progress.totalSteps || newPreview;
        if (!milestone && performance.now() - lastReport < PROGRESS_INTERVAL_MS) return;
        lastReport = performance.now();
        lastPreview = preview;
        const remote: RemoteProgress = { ...progress, ...(preview && { previewStep: preview.step }) };
        reports = reports
          .then(async () => {
            if (newPreview) {
              const stored = { step: String(preview.step), totalSteps: String(preview.totalSteps), jpeg: Buffer.from(preview.jpeg) };
              await this.redis.multi().hset(previewKey, stored).pexpire(previewKey, PREVIEW_TTL_MS).exec();
            }
            await job.updateProgress(remote);
          })
          .catch((error: unknown) => this.log.debug({ error: String(error) }, 'progress update failed'));
      },
    });
    await reports;
    return encodeResult(result);
  }
}
