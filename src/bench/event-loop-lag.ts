import { existsSync, readFileSync } from 'node:fs';

/** One timer tick: how late it fired, and what the main thread did meanwhile (Linux; NaN elsewhere). */
export interface LagSample {
  lagMs: number;
  /** Time the main thread spent running (our JavaScript, V8, libuv) since the previous tick. */
  runningMs: number;
  /** Time the main thread was ready to run but waited for a CPU (other threads or processes had them all). */
  waitingMs: number;
}

// /proc/<pid>/task/<tid>/schedstat: nanoseconds on a CPU, nanoseconds waiting on a run queue, timeslices. The main
// thread's tid is the process id.
const SCHEDSTAT = `/proc/${process.pid}/task/${process.pid}/schedstat`;

/** Milliseconds the main thread has spent running and waiting for a CPU, as the kernel counts them; undefined where it does not tell. */
export type ThreadTimes = () => [runningMs: number, waitingMs: number] | undefined;

function readSchedstat(): [number, number] | undefined {
  if (!existsSync(SCHEDSTAT)) return undefined;
  const [running, waiting] = readFileSync(SCHEDSTAT, 'utf8').split(' ').map(Number);
  return [running / 1e6, waiting / 1e6];
}

/**
 * Samples how late a repeating timer fires: each gap between two ticks beyond the period is time the event loop
 * could not run. Where Linux tells, each sample also says whether the main thread was busy (our own code blocking
 * the loop) or waiting for a CPU (the machine oversubscribed), which a lag figure alone cannot tell apart.
 */
export class EventLoopLagSampler {
  private timer: NodeJS.Timeout | undefined;
  private last = 0;
  private lastSched: [number, number] | undefined;
  private samples: LagSample[] = [];

  constructor(
    readonly periodMs = 10,
    private readonly threadTimes: ThreadTimes = readSchedstat,
    private readonly now: () => number = () => performance.now(),
  ) {}

  start(): void {
    if (this.timer) throw new Error('EventLoopLagSampler is already running');
    this.samples = [];
    this.last = this.now();
    this.lastSched = this.threadTimes();
    this.timer = setInterval(() => {
      const now = this.now();
      const sched = this.threadTimes();
      const [runningMs, waitingMs] = sched && this.lastSched ? [sched[0] - this.lastSched[0], sched[1] - this.lastSched[1]] : [NaN, NaN];
      this.samples.push({ lagMs: Math.max(0, now - this.last - this.periodMs), runningMs, waitingMs });
      this.last = now;
      this.lastSched = sched;
    }, this.periodMs);
  }

  /** Stops sampling and returns every tick. */
  stop(): LagSample[] {
    clearInterval(this.timer);
    this.timer = undefined;
    return this.samples;
  }
}
