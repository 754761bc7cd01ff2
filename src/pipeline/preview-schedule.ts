import type { LatentPreviewer, PreviewMethod } from './latent-preview.ts';
import type { StepProgress } from './types.ts';
import type { LatentSize } from './unet.ts';
import type { RgbImage } from './vae.ts';

export interface LatentPreview extends StepProgress {
  image: RgbImage;
  method: PreviewMethod;
}

/** How often previews are wanted: what a caller in another thread or process can ask for. */
export interface PreviewCadence {
  /** A preview after every `everySteps`-th step, never after the last one (the image itself comes next). */
  everySteps: number;
  /** At least this long after the previous preview: its receiver shows them no faster. Default 0. */
  minIntervalMs?: number;
  /**
   * A preview is skipped when previews would take more than this share of the time spent denoising so far
   * (judged by the last one's cost), so they slow a job by at most this much on any machine. Default 0.03.
   */
  maxShare?: number;
}

export interface PreviewOptions extends PreviewCadence {
  /** Awaited: its own time (encoding, say) counts as the preview's. */
  onPreview(preview: LatentPreview): void | Promise<void>;
  /** Milliseconds from any fixed origin (tests pass a fake clock). Default performance.now. */
  now?: () => number;
}

const DEFAULT_MAX_SHARE = 0.03;

/** Decides after each denoising step whether a preview is due, and makes it. */
export class PreviewSchedule {
  private readonly now: () => number;
  private readonly started: number;
  private spentMs = 0;
  private lastCostMs = 0;
  private lastAt = -Infinity;

  constructor(
    private readonly options: PreviewOptions,
    private readonly previewer: LatentPreviewer,
    private readonly size: LatentSize,
  ) {
    this.now = options.now ?? (() => performance.now());
    this.started = this.now();
  }

  /** `latents`: what the step predicts the final latents to be (the scheduler's x0), else its current latents. */
  async afterStep(progress: StepProgress, latents: Float32Array): Promise<void> {
    const started = this.now();
    if (!this.due(progress, started)) return;
    const image = await this.previewer.decode(latents, this.size);
    await this.options.onPreview({ ...progress, image, method: this.previewer.method });
    this.lastAt = this.now();
    this.lastCostMs = this.lastAt - started;
    this.spentMs += this.lastCostMs;
  }

  private due({ step, totalSteps }: StepProgress, now: number): boolean {
    const { everySteps, minIntervalMs = 0, maxShare = DEFAULT_MAX_SHARE } = this.options;
    if (step >= totalSteps || step % everySteps !== 0 || now - this.lastAt < minIntervalMs) return false;
    const denoisingMs = now - this.started - this.spentMs;
    return this.spentMs + this.lastCostMs <= maxShare * denoisingMs;
  }
}
