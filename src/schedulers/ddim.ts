import { AlphaCumprodScheduler } from './alpha-cumprod.ts';
import { predictionType, type SchedulerConfig, trainingAlphasCumprod } from './config.ts';
import type { StepOptions, StepResult } from './scheduler.ts';
import { assertSameLength, clipOrThreshold, drawNoise, predictFromAlpha, requireGenerator } from './sample-ops.ts';
import { spacedTimesteps } from './timesteps.ts';

/** `DDIMScheduler.__init__` defaults (diffusers 0.35). Note clip_sample and set_alpha_to_one default to true. */
export const DDIM_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear',
  trained_betas: null,
  clip_sample: true,
  set_alpha_to_one: true,
  steps_offset: 0,
  prediction_type: 'epsilon',
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  clip_sample_range: 1.0,
  sample_max_value: 1.0,
  timestep_spacing: 'leading',
  rescale_betas_zero_snr: false,
} as const;

/**
 * Denoising Diffusion Implicit Models (Song et al. 2020), eq. (12) with the eta-weighted variance of eq. (16):
 * eta = 0 is deterministic; eta > 0 draws one noise tensor per step from `options.generator`.
 */
export class DDIMScheduler extends AlphaCumprodScheduler {
  private numInferenceSteps = 0;

  constructor(config: SchedulerConfig) {
    super(config, predictionType(config), trainingAlphasCumprod(config));
  }

  override setTimesteps(steps: number): void {
    this.timesteps = spacedTimesteps(this.config, this.alphasCumprod.length, steps, true);
    this.numInferenceSteps = steps;
  }

  override step(modelOutput: Float32Array, timestep: number, sample: Float32Array, options?: StepOptions): StepResult {
    assertSameLength(modelOutput, sample);
    if (this.numInferenceSteps === 0) throw new Error('DDIMScheduler.step called before setTimesteps');
    const f = Math.fround;
    const eta = options?.eta ?? 0;
    if (!(eta >= 0)) throw new RangeError(`eta must be >= 0, got ${eta}`);
    const alphaProd = this.alphaAt(timestep);
    // diffusers steps back by num_train_timesteps // N whatever the spacing.
    const prevTimestep = timestep - Math.floor(this.alphasCumprod.length / this.numInferenceSteps);
    const alphaProdPrev = this.alphaAtPrevious(prevTimestep);

    const predicted = predictFromAlpha(this.prediction, modelOutput, sample, alphaProd);
    const predOriginalSample = clipOrThreshold(this.config, predicted.predOriginal);

    const betaProd = f(1 - alphaProd);
    const betaProdPrev = f(1 - alphaProdPrev);
    const variance = f(f(betaProdPrev / betaProd) * f(1 - f(alphaProd / alphaProdPrev)));
    const stdDev = f(eta * f(Math.sqrt(variance)));
    const directionScale = f(Math.sqrt(f(f(1 - alphaProdPrev) - f(stdDev * stdDev))));
    const originalScale = f(Math.sqrt(alphaProdPrev));
    let prevSample = predOriginalSample.map((x0, i) => originalScale * x0 + directionScale * predicted.predEpsilon[i]);
    if (eta > 0) {
      const noise = drawNoise(requireGenerator(options, 'DDIMScheduler'), sample);
      prevSample = prevSample.map((x, i) => x + stdDev * noise[i]);
    }
    return { prevSample, predOriginalSample };
  }
}
