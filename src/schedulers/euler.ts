import { predictionType, type PredictionType, SchedulerConfig, trainingAlphasCumprod } from './config.ts';
import { initNoiseSigma, predictOriginal, scaleBySigma, sigmaSchedule } from './k-diffusion.ts';
import type { Scheduler, StepResult } from './scheduler.ts';
import { assertSameLength } from './sample-ops.ts';
import { finalSigma, rejectUnsupportedSigmas } from './sigmas.ts';
import { indexForTimestep } from './timesteps.ts';

/** `EulerDiscreteScheduler.__init__` defaults (diffusers 0.35). */
export const EULER_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear',
  trained_betas: null,
  prediction_type: 'epsilon',
  interpolation_type: 'linear',
  use_karras_sigmas: false,
  use_exponential_sigmas: false,
  use_beta_sigmas: false,
  sigma_min: null,
  sigma_max: null,
  timestep_spacing: 'linspace',
  timestep_type: 'discrete',
  steps_offset: 0,
  rescale_betas_zero_snr: false,
  final_sigmas_type: 'zero',
} as const;

/**
 * Euler's method on the probability-flow ODE (Karras et al. 2022, Algorithm 2 with s_churn = 0), as
 * diffusers' `EulerDiscreteScheduler`. With `timestep_spacing: "trailing"` it is SD-Turbo's sampler.
 */
export class EulerDiscreteScheduler implements Scheduler {
  readonly integerTimesteps = false;
  readonly alphasCumprod: Float32Array;
  timesteps: number[] = [];
  /** One per timestep plus the final sigma (float32). */
  sigmas = new Float32Array(0);
  initNoiseSigma = 1;
  private readonly prediction: PredictionType;
  private stepIndex: number | null = null;

  constructor(readonly config: SchedulerConfig) {
    rejectUnsupportedSigmas(config);
    this.prediction = predictionType(config);
    this.alphasCumprod = trainingAlphasCumprod(config, { floorTerminalAlpha: true });
  }

  setTimesteps(steps: number): void {
    const logLinear = this.config.choice('interpolation_type', ['linear', 'log_linear'] as const) === 'log_linear';
    const schedule = sigmaSchedule(this.config, this.alphasCumprod, steps, { logLinear });
    this.sigmas = Float32Array.from([...schedule.sigmas, finalSigma(this.config, this.alphasCumprod)]);
    const continuous = this.config.choice('timestep_type', ['discrete', 'continuous'] as const) === 'continuous';
    // diffusers only uses EDM-style continuous timesteps (0.25 * ln sigma) for v-prediction models.
    this.timesteps =
      continuous && this.prediction === 'v_prediction'
        ? Array.from(this.sigmas.subarray(0, -1), (sigma) => Math.fround(0.25 * Math.fround(Math.log(sigma))))
        : schedule.timesteps;
    this.initNoiseSigma = initNoiseSigma(this.config, this.sigmas);
    this.stepIndex = null;
  }

  scaleModelInput(sample: Float32Array, timestep: number): Float32Array {
    return scaleBySigma(sample, this.sigmas[this.currentIndex(timestep)]);
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array): StepResult {
    assertSameLength(modelOutput, sample);
    const index = this.currentIndex(timestep);
    const sigma = this.sigmas[index];
    const predOriginalSample = predictOriginal(this.prediction, modelOutput, sample, sigma);
    const dt = Math.fround(this.sigmas[index + 1] - sigma);
    const prevSample = sample.map((x, i) => x + ((x - predOriginalSample[i]) / sigma) * dt);
    this.stepIndex = index + 1;
    return { prevSample, predOriginalSample };
  }

  private currentIndex(timestep: number): number {
    this.stepIndex ??= indexForTimestep(this.timesteps, timestep, 'error');
    return this.stepIndex;
  }
}
