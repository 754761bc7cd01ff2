import { printable } from './printable.ts';
import { formatBytes, type PullEvent } from './pull.ts';

const BAR_WIDTH = 24;
const REDRAW_MS = 100;
/** Speed is averaged over roughly this window so the ETA does not jump with every chunk. */
const SPEED_WINDOW_MS = 5000;

function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '--:--';
  const s = Math.round(seconds);
  const hours = Math.floor(s / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, '0');
  return hours > 0 ? `${hours}:${String(minutes).padStart(2, '0')}:${rest}` : `${minutes}:${rest}`;
}

/**
 * Draws pull progress on a stream: on a terminal one bar (done/total, speed, ETA, current file) redrawn in place,
 * with a line for each finished file above it; elsewhere only a line per finished file and per retry.
 */
export class PullProgress {
  private total = 0;
  private done = 0;
  private readonly fileBytes = new Map<string, number>();
  private readonly samples: { at: number; bytes: number }[] = [];
  private fileStarted = new Map<string, { at: number; offset: number }>();
  private current = '';
  private lastDraw = 0;
  private drawn = false;

  constructor(private readonly stream: NodeJS.WriteStream) {}

  readonly onEvent = (event: PullEvent): void => {
    const now = performance.now();
    switch (event.type) {
      case 'plan':
        this.total = event.files.reduce((sum, file) => sum + file.size, 0);
        for (const file of event.files) this.fileBytes.set(file.path, file.present);
        this.done = event.files.reduce((sum, file) => sum + file.present, 0);
        this.samples.push({ at: now, bytes: 0 });
        this.line(`Pulling ${event.repo}${event.revision === 'main' ? '' : `@${event.revision}`}: ${event.files.length} files, ${formatBytes(this.total)}`);
        for (const name of event.unsafe) this.line(`left out "${name}": not a plain file name`);
        break;
      case 'file-start':
        this.setFileBytes(event.path, event.offset);
        this.fileStarted.set(event.path, { at: now, offset: event.offset });
        this.current = event.offset > 0 ? `${event.path} (resumed at ${formatBytes(event.offset)})` : event.path;
        this.draw(now, true);
        break;
      case 'bytes':
        this.setFileBytes(event.path, (this.fileBytes.get(event.path) ?? 0) + event.bytes);
        this.samples.push({ at: now, bytes: (this.samples.at(-1)?.bytes ?? 0) + event.bytes });
        while (this.samples.length > 2 && now - this.samples[1].at > SPEED_WINDOW_MS) this.samples.shift();
        this.draw(now, false);
        break;
      case 'file-done': {
        this.setFileBytes(event.path, event.size);
        const started = this.fileStarted.get(event.path);
        const seconds = started ? (now - started.at) / 1000 : 0;
        const rate = started && seconds > 0.05 ? `, ${formatBytes((event.size - started.offset) / seconds)}/s` : '';
        this.line(`${event.reused ? 'kept' : 'done'} ${event.path} (${formatBytes(event.size)}${event.reused ? ', already verified' : `${rate}, verified`})`);
        break;
      }
      case 'retry':
        this.line(`retrying ${event.path} in ${(event.delayMs / 1000).toFixed(1)} s: ${event.reason.replace(`${event.path}: `, '')}`);
        break;
    }
  };

  /** Leaves the cursor on a fresh line. */
  finish(): void {
    if (this.drawn) this.stream.write('\r\x1b[2K');
    this.drawn = false;
  }

  private setFileBytes(path: string, bytes: number): void {
    this.done += bytes - (this.fileBytes.get(path) ?? 0);
    this.fileBytes.set(path, bytes);
  }

  private speed(): number {
    const first = this.samples[0];
    const last = this.samples.at(-1);
    if (!first || !last || last.at - first.at < 200) return 0;
    return ((last.bytes - first.bytes) * 1000) / (last.at - first.at);
  }

  private line(line: string): void {
    const text = printable(line);
    if (this.stream.isTTY) {
      this.stream.write(`\r\x1b[2K${text}\n`);
      this.drawn = false;
      this.draw(performance.now(), true);
    } else {
      this.stream.write(`${text}\n`);
    }
  }

  private draw(now: number, force: boolean): void {
    if (!this.stream.isTTY || this.total === 0 || (!force && now - this.lastDraw < REDRAW_MS)) return;
    this.lastDraw = now;
    const fraction = Math.min(1, this.done / this.total);
    const filled = Math.round(fraction * BAR_WIDTH);
    const speed = this.speed();
    const eta = speed > 0 ? formatDuration((this.total - this.done) / speed) : '--:--';
    const columns = this.stream.columns ?? 100;
    const text =
      `[${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}% ` +
      `${formatBytes(this.done)}/${formatBytes(this.total)}  ${speed > 0 ? `${formatBytes(speed)}/s` : '-- B/s'}  ETA ${eta}  ${this.current}`;
    this.stream.write(`\r\x1b[2K${text.slice(0, Math.max(20, columns - 1))}`);
    this.drawn = true;
  }
}
