import { AlphaCumprodScheduler } from './alpha-cumprod.ts';
import { predictionType, type SchedulerConfig, trainingAlphasCumprod } from './config.ts';
import type { StepOptions, StepResult } from './scheduler.ts';
import { assertSameLength, clipOrThreshold, drawNoise, predictFromAlpha, requireGenerator } from './sample-ops.ts';
import { indexForTimestep, linspace, validateStepCount } from './timesteps.ts';

/** `LCMScheduler.__init__` defaults (diffusers 0.35). `timestep_spacing` is accepted but not used. */
export const LCM_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  trained_betas: null,
  original_inference_steps: 50,
  clip_sample: false,
  clip_sample_range: 1.0,
  set_alpha_to_one: true,
  steps_offset: 0,
  prediction_type: 'epsilon',
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  sample_max_value: 1.0,
  timestep_spacing: 'leading',
  timestep_scaling: 10.0,
  rescale_betas_zero_snr: false,
} as const;

/** sigma_data of the consistency-model boundary condition. */
const SIGMA_DATA = 0.5;

/**
 * Latent Consistency Model multistep sampling (Luo et al. 2023): each step predicts the clean latents through
 * the consistency boundary condition, then re-noises them to the next timestep with one noise draw (none on
 * the last step). Timesteps come from the `original_inference_steps`-point distillation schedule.
 */
export class LCMScheduler extends AlphaCumprodScheduler {
  private stepIndex: number | null = null;
  private beginIndex: number | null = null;

  constructor(config: SchedulerConfig) {
    super(config, predictionType(config), trainingAlphasCumprod(config));
  }

  override setTimesteps(steps: number): void {
    const trainSteps = this.alphasCumprod.length;
    const originalSteps = this.config.integer('original_inference_steps', 1);
    if (originalSteps > trainSteps) {
      throw new Error(`LCMScheduler: original_inference_steps ${originalSteps} exceeds num_train_timesteps ${trainSteps}`);
    }
    validateStepCount(steps, originalSteps);
    const skip = Math.floor(trainSteps / originalSteps);
    const origin = Array.from({ length: originalSteps }, (_, i) => (originalSteps - i) * skip - 1);
    this.timesteps = linspace(0, originalSteps, steps, false).map((position) => origin[Math.floor(position)]);
    this.stepIndex = null;
    this.beginIndex = null;
  }

  override setBeginIndex(index: number): void {
    this.beginIndex = index;
  }

  override step(modelOutput: Float32Array, timestep: number, sample: Float32Array, options?: StepOptions): StepResult {
    assertSameLength(modelOutput, sample);
    const f = Math.fround;
    this.stepIndex ??= this.beginIndex ?? indexForTimestep(this.timesteps, timestep, 'error');
    const index = this.stepIndex;
    const isLast = index === this.timesteps.length - 1;
    const prevTimestep = isLast ? timestep : this.timesteps[index + 1];
    const alphaProd = this.alphaAt(timestep);
    const alphaProdPrev = this.alphaAtPrevious(prevTimestep);

    const scaledTimestep = f(timestep * this.config.number('timestep_scaling'));
    const denominator = f(f(scaledTimestep * scaledTimestep) + SIGMA_DATA ** 2);
    const skipScale = f(SIGMA_DATA ** 2 / denominator);
    const outputScale = f(scaledTimestep / f(Math.sqrt(denominator)));

    const predicted = predictFromAlpha(this.prediction, modelOutput, sample, alphaProd);
    const predOriginal = clipOrThreshold(this.config, predicted.predOriginal);
    const denoised = predOriginal.map((x0, i) => outputScale * x0 + skipScale * sample[i]);

    let prevSample = denoised;
    if (!isLast) {
      const noise = drawNoise(requireGenerator(options, 'LCMScheduler'), sample);
      const signal = f(Math.sqrt(alphaProdPrev));
      const noiseScale = f(Math.sqrt(f(1 - alphaProdPrev)));
      prevSample = denoised.map((x, i) => signal * x + noiseScale * noise[i]);
    }
    this.stepIndex = index + 1;
    return { prevSample, predOriginalSample: denoised };
  }
}
