import { predictionType, type PredictionType, SchedulerConfig, trainingAlphasCumprod } from './config.ts';
import type { Scheduler, StepOptions, StepResult } from './scheduler.ts';
import { assertSameLength, clipOrThreshold, drawNoise, predictFromAlpha, requireGenerator } from './sample-ops.ts';
import { spacedTimesteps, timestepSpacing, validateStepCount } from './timesteps.ts';

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
export class DDIMScheduler implements Scheduler {
  readonly integerTimesteps = true;
  readonly initNoiseSigma = 1;
  readonly alphasCumprod: Float32Array;
  timesteps: number[] = [];
  private readonly prediction: PredictionType;
  private readonly finalAlphaCumprod: number;
  private numInferenceSteps = 0;

  constructor(readonly config: SchedulerConfig) {
    this.prediction = predictionType(config);
    this.alphasCumprod = trainingAlphasCumprod(config);
    this.finalAlphaCumprod = config.boolean('set_alpha_to_one') ? 1 : this.alphasCumprod[0];
  }

  setTimesteps(steps: number): void {
    validateStepCount(steps, this.alphasCumprod.length);
    this.numInferenceSteps = steps;
    this.timesteps = spacedTimesteps(
      timestepSpacing(this.config),
      this.alphasCumprod.length,
      steps,
      this.config.integer('steps_offset'),
      true,
    );
  }

  scaleModelInput(sample: Float32Array): Float32Array {
    return sample;
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, options?: StepOptions): StepResult {
    assertSameLength(modelOutput, sample);
    if (this.numInferenceSteps === 0) throw new Error('DDIMScheduler.step called before setTimesteps');
    const f = Math.fround;
    const eta = options?.eta ?? 0;
    if (!(eta >= 0)) throw new RangeError(`eta must be >= 0, got ${eta}`);
    const alphaProd = this.alphaAt(timestep);
    // diffusers steps back by num_train_timesteps // N whatever the spacing.
    const prevTimestep = timestep - Math.floor(this.alphasCumprod.length / this.numInferenceSteps);
    const alphaProdPrev = prevTimestep >= 0 ? this.alphaAt(prevTimestep) : this.finalAlphaCumprod;

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

  private alphaAt(timestep: number): number {
    if (!Number.isInteger(timestep) || timestep < 0 || timestep >= this.alphasCumprod.length) {
      throw new RangeError(`DDIM timestep must be an integer in 0..${this.alphasCumprod.length - 1}, got ${timestep}`);
    }
    return this.alphasCumprod[timestep];
  }
}
