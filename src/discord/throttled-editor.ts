/**
 * Keeps one message up to date without flooding Discord: an edit starts at least one interval after the
 * previous one completed (so Discord sees them that far apart), always with the newest content, one at a
 * time. finish() sends the last word unthrottled, after whatever edit is in flight, so a late progress
 * edit can never overwrite a result.
 */
export class ThrottledEditor<Payload> {
  private pending: Payload | undefined;
  private inFlight: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastSentAt = -Infinity;
  private closed = false;

  constructor(
    private readonly send: (payload: Payload) => Promise<void>,
    private readonly intervalMs: number,
    private readonly onError: (error: unknown) => void,
  ) {}

  update(payload: Payload): void {
    if (this.closed) return;
    this.pending = payload;
    this.schedule();
  }

  /** Drops pending updates and waits for the edit in flight; later updates are ignored. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    this.pending = undefined;
    await this.inFlight;
  }

  /** close(), then sends the final payload; its error is the caller's to handle. */
  async finish(payload: Payload): Promise<void> {
    await this.close();
    await this.send(payload);
  }

  private schedule(): void {
    if (this.inFlight || this.timer || this.pending === undefined) return;
    const wait = this.lastSentAt + this.intervalMs - performance.now();
    if (wait > 0) this.timer = setTimeout(() => this.flush(), wait);
    else this.flush();
  }

  private flush(): void {
    this.timer = undefined;
    const payload = this.pending;
    if (payload === undefined || this.closed) return;
    this.pending = undefined;
    this.inFlight = this.send(payload)
      .catch(this.onError)
      .finally(() => {
        this.lastSentAt = performance.now();
        this.inFlight = undefined;
        this.schedule();
      });
  }
}
