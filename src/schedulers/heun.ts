import { predictionType, type SchedulerConfig, trainingAlphasCumprod } from './config.ts';
import { KDiffusionScheduler, predictOriginal, sigmaSchedule, type StepSchedule } from './k-diffusion.ts';
import type { StepResult } from './scheduler.ts';
import { clampSample } from './sample-ops.ts';
import { rejectUnsupportedSigmas } from './sigmas.ts';

/** `HeunDiscreteScheduler.__init__` defaults (diffusers 0.35). */
export const HEUN_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: 'linear',
  trained_betas: null,
  prediction_type: 'epsilon',
  use_karras_sigmas: false,
  use_exponential_sigmas: false,
  use_beta_sigmas: false,
  clip_sample: false,
  clip_sample_range: 1.0,
  timestep_spacing: 'linspace',
  steps_offset: 0,
} as const;

/** The Euler step of a Heun pair, kept for the correction that follows it. */
interface PendingCorrection {
  derivative: Float32Array;
  dt: number;
  sample: Float32Array;
}

/**
 * Heun's second-order method (Karras et al. 2022, Algorithm 1 without churn). Every step but the last takes
 * two model calls, so `timesteps` has 2N − 1 entries: t0, then each later timestep twice.
 */
export class HeunDiscreteScheduler extends KDiffusionScheduler {
  override readonly order = 2;
  private pending: PendingCorrection | null = null;

  constructor(config: SchedulerConfig) {
    rejectUnsupportedSigmas(config);
    super(config, predictionType(config), trainingAlphasCumprod(config, { extraSchedules: ['exp'] }));
  }

  override setTimesteps(steps: number): void {
    super.setTimesteps(steps);
    this.pending = null;
  }

  /** sigma_0, then each later sigma twice, then 0: 2N sigmas for 2N − 1 timesteps. */
  protected override buildSchedule(steps: number): StepSchedule {
    const schedule = sigmaSchedule(this.config, this.alphasCumprod, steps);
    const [firstSigma, ...laterSigmas] = schedule.sigmas;
    const [firstTimestep, ...laterTimesteps] = schedule.timesteps;
    return {
      timesteps: [firstTimestep, ...laterTimesteps.flatMap((t) => [t, t])],
      sigmas: Float32Array.from([firstSigma, ...laterSigmas.flatMap((s) => [s, s]), 0]),
    };
  }

  protected override stepAt(index: number, modelOutput: Float32Array, sample: Float32Array): StepResult {
    const pending = this.pending;
    // First call of a pair: Euler from sigmas[i] to sigmas[i+1]. Second call: evaluated at sigmas[i].
    const sigma = pending ? this.sigmas[index - 1] : this.sigmas[index];
    const sigmaNext = pending ? this.sigmas[index] : this.sigmas[index + 1];
    let predOriginalSample = predictOriginal(this.prediction, modelOutput, sample, pending ? sigmaNext : sigma);
    if (this.config.boolean('clip_sample')) {
      predOriginalSample = clampSample(predOriginalSample, this.config.number('clip_sample_range'));
    }

    let prevSample: Float32Array;
    if (!pending) {
      const derivative = sample.map((x, i) => (x - predOriginalSample[i]) / sigma);
      const dt = Math.fround(sigmaNext - sigma);
      this.pending = { derivative, dt, sample };
      prevSample = sample.map((x, i) => x + derivative[i] * dt);
    } else {
      const derivative = sample.map((x, i) => (pending.derivative[i] + (x - predOriginalSample[i]) / sigmaNext) / 2);
      prevSample = pending.sample.map((x, i) => x + derivative[i] * pending.dt);
      this.pending = null;
    }
    return { prevSample, predOriginalSample };
  }
}
