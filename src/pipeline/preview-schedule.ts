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
   * Previews take at most this share of the time spent denoising so far, so they slow a job by at most this much on
   * any machine: each is made with the best method whose expected cost (its last preview's, in this job or an
   * earlier one) fits what is left, else skipped. Default 0.03.
   */
  maxShare?: number;
  /**
   * Every due step gets a preview, all made alike (an animation's frames must match): with the best method whose
   * expected cost fits `maxShare` of a step's time, else the cheapest; a method found too dear is not used again in
   * the job. A method not yet timed is tried once.
   */
  steady?: boolean;
}

export interface PreviewOptions extends PreviewCadence {
  /** Awaited: its own time (encoding, say) counts as the preview's. */
  onPreview(preview: LatentPreview): void | Promise<void>;
  /** Milliseconds from any fixed origin (tests pass a fake clock). Default performance.now. */
  now?: () => number;
}

const DEFAULT_MAX_SHARE = 0.03;

/** Decides after each denoising step whether a preview is due and how to make it, and makes it. */
export class PreviewSchedule {
  private readonly now: () => number;
  private readonly started: number;
  private spentMs = 0;
  private lastAt = -Infinity;
  /** Steady previews: the methods before this one (of the previewer's, best first) were found too dear. */
  private steadyMethod = 0;

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
    const method = this.due(progress, started);
    if (!method) return;
    const image = await this.previewer.decode(latents, this.size, method);
    await this.options.onPreview({ ...progress, image, method });
    this.lastAt = this.now();
    const cost = this.lastAt - started;
    this.previewer.recordCost(method, this.size, cost);
    this.spentMs += cost;
  }

  /** The method for a preview now, or undefined when none is due or none fits the budget. */
  private due({ step, totalSteps }: StepProgress, now: number): PreviewMethod | undefined {
    const { everySteps, minIntervalMs = 0, maxShare = DEFAULT_MAX_SHARE, steady = false } = this.options;
    if (step >= totalSteps || step % everySteps !== 0 || now - this.lastAt < minIntervalMs) return undefined;
    if (steady) return this.steadyMethodFor(maxShare * ((now - this.started - this.spentMs) / step));
    const left = maxShare * (now - this.started - this.spentMs) - this.spentMs;
    // A method not yet timed is tried once when the budget is not spent: its cost is known from then on.
    return this.previewer.methods.find((method) => (this.previewer.expectedCostMs(method, this.size) ?? 0) <= left);
  }

  private steadyMethodFor(budgetMs: number): PreviewMethod {
    const { methods } = this.previewer;
    while (this.steadyMethod < methods.length - 1 && (this.previewer.expectedCostMs(methods[this.steadyMethod], this.size) ?? 0) > budgetMs) this.steadyMethod++;
    return methods[this.steadyMethod];
  }
}
