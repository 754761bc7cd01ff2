/**
 * Samples how late a repeating timer fires: each gap between two ticks beyond the period is time the event loop
 * could not run (our own code blocking it, or the OS not scheduling the thread).
 */
export class EventLoopLagSampler {
  private timer: NodeJS.Timeout | undefined;
  private last = 0;
  private lags: number[] = [];

  constructor(readonly periodMs = 10) {}

  start(): void {
    if (this.timer) throw new Error('EventLoopLagSampler is already running');
    this.lags = [];
    this.last = performance.now();
    this.timer = setInterval(() => {
      const now = performance.now();
      this.lags.push(Math.max(0, now - this.last - this.periodMs));
      this.last = now;
    }, this.periodMs);
  }

  /** Stops sampling and returns every tick's lag in milliseconds. */
  stop(): number[] {
    clearInterval(this.timer);
    this.timer = undefined;
    return this.lags;
  }
}
