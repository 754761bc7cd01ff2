import { predictionType, type SchedulerConfig, trainingAlphasCumprod } from './config.ts';
import { KDiffusionScheduler, predictOriginal, sigmaSchedule, type StepSchedule } from './k-diffusion.ts';
import type { StepResult } from './scheduler.ts';
import { finalSigma, rejectUnsupportedSigmas } from './sigmas.ts';

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
export class EulerDiscreteScheduler extends KDiffusionScheduler {
  constructor(config: SchedulerConfig) {
    rejectUnsupportedSigmas(config);
    super(config, predictionType(config), trainingAlphasCumprod(config, { floorTerminalAlpha: true }));
  }

  protected override buildSchedule(steps: number): StepSchedule {
    const logLinear = this.config.choice('interpolation_type', ['linear', 'log_linear'] as const) === 'log_linear';
    const schedule = sigmaSchedule(this.config, this.alphasCumprod, steps, { logLinear });
    const sigmas = Float32Array.from([...schedule.sigmas, finalSigma(this.config, this.alphasCumprod)]);
    const continuous = this.config.choice('timestep_type', ['discrete', 'continuous'] as const) === 'continuous';
    // diffusers only uses EDM-style continuous timesteps (0.25 * ln sigma) for v-prediction models.
    const timesteps =
      continuous && this.prediction === 'v_prediction'
        ? Array.from(sigmas.subarray(0, -1), (sigma) => Math.fround(0.25 * Math.fround(Math.log(sigma))))
        : schedule.timesteps;
    return { timesteps, sigmas };
  }

  protected override stepAt(index: number, modelOutput: Float32Array, sample: Float32Array): StepResult {
    const sigma = this.sigmas[index];
    const predOriginalSample = predictOriginal(this.prediction, modelOutput, sample, sigma);
    const dt = Math.fround(this.sigmas[index + 1] - sigma);
    const prevSample = sample.map((x, i) => x + ((x - predOriginalSample[i]) / sigma) * dt);
    return { prevSample, predOriginalSample };
  }
}
