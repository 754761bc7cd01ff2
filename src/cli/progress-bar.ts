const WIDTH = 24;

/** A one-line step progress bar with speed, redrawn in place on a terminal; silent elsewhere. */
export class ProgressBar {
  private started: number | undefined;
  private drawn = false;

  constructor(private readonly stream: NodeJS.WriteStream) {}

  update(step: number, total: number): void {
    this.started ??= performance.now();
    if (!this.stream.isTTY) return;
    const filled = Math.round((step / total) * WIDTH);
    const seconds = (performance.now() - this.started) / 1000;
    const rate = seconds > 0 ? `${(step / seconds).toFixed(2)} it/s` : '';
    this.stream.write(`\r[${'#'.repeat(filled)}${'.'.repeat(WIDTH - filled)}] ${step}/${total} steps ${rate}  `);
    this.drawn = true;
  }

  finish(): void {
    if (this.drawn) this.stream.write('\n');
    this.drawn = false;
  }
}
