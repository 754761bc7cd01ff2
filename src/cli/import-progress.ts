import type { ImportEvent } from '../import/import-model.ts';
import { formatBytes } from '../models/pull.ts';

const BAR_WIDTH = 24;
const REDRAW_MS = 100;
/** Unmatched LoRA keys listed one by one up to this many, then counted. */
const LISTED_KEYS = 40;

/**
 * Draws import progress on a stream: what is imported and any notes, then on a terminal one bar per component
 * redrawn in place (bytes written, speed) and a line when it is done; elsewhere only the lines.
 */
export class ImportProgress {
  private component = '';
  private total = 0;
  private written = 0;
  private started = 0;
  private lastDraw = 0;
  private drawn = false;

  constructor(private readonly stream: NodeJS.WriteStream) {}

  readonly onEvent = (event: ImportEvent): void => {
    const now = performance.now();
    switch (event.type) {
      case 'plan':
        this.line(`Importing ${event.description}`);
        for (const note of event.notes) this.line(`note: ${note}`);
        for (const lora of event.loras) {
          this.line(`LoRA ${lora.name} at ${lora.weight}: ${lora.matched} modules merged`);
          if (lora.unmatched.length === 0) continue;
          this.line(`warning: LoRA ${lora.name} has ${lora.unmatched.length} modules that match nothing in this model and were not applied:`);
          for (const key of lora.unmatched.slice(0, LISTED_KEYS)) this.line(`  ${key}`);
          if (lora.unmatched.length > LISTED_KEYS) this.line(`  … and ${lora.unmatched.length - LISTED_KEYS} more`);
        }
        break;
      case 'note':
        this.line(`note: ${event.text}`);
        break;
      case 'component-start':
        Object.assign(this, { component: event.component, total: event.bytes, written: 0, started: now });
        this.draw(now, true);
        break;
      case 'bytes':
        this.written += event.bytes;
        this.draw(now, false);
        break;
      case 'component-done': {
        const seconds = (now - this.started) / 1000;
        this.line(`done ${event.component} (${formatBytes(this.written)} in ${seconds.toFixed(1)} s)`);
        this.total = 0;
        break;
      }
    }
  };

  /** Leaves the cursor on a fresh line. */
  finish(): void {
    if (this.drawn) this.stream.write('\r\x1b[2K');
    this.drawn = false;
  }

  private line(text: string): void {
    if (this.stream.isTTY) {
      this.stream.write(`\r\x1b[2K${text}\n`);
      this.drawn = false;
    } else {
      this.stream.write(`${text}\n`);
    }
  }

  private draw(now: number, force: boolean): void {
    if (!this.stream.isTTY || this.total === 0 || (!force && now - this.lastDraw < REDRAW_MS)) return;
    this.lastDraw = now;
    const fraction = Math.min(1, this.written / this.total);
    const filled = Math.round(fraction * BAR_WIDTH);
    const seconds = (now - this.started) / 1000;
    const speed = seconds > 0.2 ? `${formatBytes(this.written / seconds)}/s` : '';
    this.stream.write(
      `\r\x1b[2K${this.component} [${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}% ${formatBytes(this.written)}/${formatBytes(this.total)} ${speed}`,
    );
    this.drawn = true;
  }
}
