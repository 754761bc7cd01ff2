import type { CancelReason } from '../jobs/errors.ts';
import type { ImagineOptions } from '../jobs/options.ts';
import type { JobResult } from '../jobs/runner.ts';
import { JobDetachedError, sameStatus, type JobHandle, type JobStatus } from './types.ts';

export type Outcome = { result: JobResult } | { error: Error };

/** following: the bot reads the job's state from Redis. settled: its outcome is out to the Discord side. done: posted, or let go. */
export type Phase = 'following' | 'settled' | 'done';

export interface RemoteJobHooks {
  cancel(job: RemoteJob, reason: CancelReason): boolean;
  acknowledge(job: RemoteJob): Promise<void>;
}

/** The bot's handle on a job that runs on some worker; BullJobQueue moves it through its phases. */
export class RemoteJob implements JobHandle {
  readonly result: Promise<JobResult>;
  phase: Phase = 'following';
  cancelRequested: CancelReason | undefined;
  /** The cancel has not reached Redis yet (it was down); retried on every poll. */
  cancelPending = false;
  /** The Discord side posted the outcome; marking it done in Redis is retried until it succeeds. */
  delivered = false;
  private resolve!: (result: JobResult) => void;
  private reject!: (error: Error) => void;
  private readonly listeners = new Set<(status: JobStatus) => void>();

  constructor(
    readonly id: string,
    readonly userId: string,
    readonly options: ImagineOptions,
    private current: JobStatus,
    readonly possiblyPosted: boolean,
    private readonly hooks: RemoteJobHooks,
  ) {
    this.result = new Promise<JobResult>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    this.result.catch(() => {});
  }

  status(): JobStatus {
    return this.current;
  }

  onStatus(listener: (status: JobStatus) => void): () => void {
    if (this.phase === 'following') this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  cancel(reason: CancelReason): boolean {
    return this.hooks.cancel(this, reason);
  }

  acknowledge(): Promise<void> {
    return this.hooks.acknowledge(this);
  }

  setStatus(status: JobStatus): void {
    if (this.phase !== 'following' || sameStatus(status, this.current)) return;
    this.current = status;
    for (const listener of this.listeners) listener(status);
  }

  settle(outcome: Outcome): void {
    if (this.phase !== 'following') return;
    this.phase = 'settled';
    this.listeners.clear();
    if ('result' in outcome) this.resolve(outcome.result);
    else this.reject(outcome.error);
  }

  /** This process stops following the job (it shuts down, or another bot took the job over); nothing is posted from here. */
  detach(why: string): void {
    if (this.phase !== 'following') return;
    this.phase = 'done';
    this.listeners.clear();
    this.reject(new JobDetachedError(why));
  }
}
