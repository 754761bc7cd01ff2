import { JobDetachedError, type CancelReason, type ImagineOptions, type JobHandle, type JobResult, type JobStatus } from './types.ts';

export type Outcome = { result: JobResult } | { error: Error };

/**
 * tracking: the bot follows the job in Redis. finished: its outcome is known and the bot waits for the right
 * to post it (another bot may hold it). claimed: this bot posts it (result settled). done: posted, or left.
 */
export type Phase = 'tracking' | 'finished' | 'claimed' | 'done';

export interface RemoteJobHooks {
  cancel(job: RemoteJob, reason: CancelReason): boolean;
  acknowledge(job: RemoteJob): Promise<void>;
}

/** The bot's handle on a job that runs on some worker; BullJobQueue moves it through its phases. */
export class RemoteJob implements JobHandle {
  readonly result: Promise<JobResult>;
  phase: Phase = 'tracking';
  outcome: Outcome | undefined;
  cancelRequested: CancelReason | undefined;
  /** The cancel has not reached Redis yet (it was down); retried on every poll. */
  cancelPending = false;
  /** The bot posted the outcome; marking it done in Redis is retried until it succeeds. */
  delivered = false;
  private resolve!: (result: JobResult) => void;
  private reject!: (error: Error) => void;
  private readonly listeners = new Set<(status: JobStatus) => void>();

  constructor(
    readonly id: string,
    readonly userId: string,
    readonly options: ImagineOptions,
    private current: JobStatus,
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
    if (this.phase === 'tracking') this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  cancel(reason: CancelReason): boolean {
    return this.hooks.cancel(this, reason);
  }

  acknowledge(): Promise<void> {
    return this.hooks.acknowledge(this);
  }

  setStatus(status: JobStatus): void {
    if (this.phase !== 'tracking' || JSON.stringify(status) === JSON.stringify(this.current)) return;
    this.current = status;
    for (const listener of this.listeners) listener(status);
  }

  /** The outcome is known; it is handed out once settle() runs (after this bot claims the delivery). */
  finish(outcome: Outcome): void {
    if (this.phase !== 'tracking') return;
    this.phase = 'finished';
    this.outcome = outcome;
    this.listeners.clear();
  }

  settle(): void {
    if (this.phase !== 'finished' || !this.outcome) return;
    this.phase = 'claimed';
    if ('result' in this.outcome) this.resolve(this.outcome.result);
    else this.reject(this.outcome.error);
  }

  detach(why: string): void {
    if (this.phase === 'claimed' || this.phase === 'done') return;
    this.phase = 'done';
    this.listeners.clear();
    this.reject(new JobDetachedError(why));
  }
}
