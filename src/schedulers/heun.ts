import { predictionType, type PredictionType, SchedulerConfig, trainingAlphasCumprod } from './config.ts';
import { initNoiseSigma, predictOriginal, scaleBySigma, sigmaSchedule } from './k-diffusion.ts';
import type { Scheduler, StepResult } from './scheduler.ts';
import { assertSameLength, clampSample } from './sample-ops.ts';
import { rejectUnsupportedSigmas } from './sigmas.ts';
import { indexForTimestep } from './timesteps.ts';

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
export class HeunDiscreteScheduler implements Scheduler {
  readonly integerTimesteps = false;
  readonly alphasCumprod: Float32Array;
  timesteps: number[] = [];
  /** sigma_0, then each later sigma twice, then 0: 2N entries. */
  sigmas = new Float32Array(0);
  initNoiseSigma = 1;
  private readonly prediction: PredictionType;
  private pending: PendingCorrection | null = null;
  private stepIndex: number | null = null;

  constructor(readonly config: SchedulerConfig) {
    rejectUnsupportedSigmas(config);
    this.prediction = predictionType(config);
    this.alphasCumprod = trainingAlphasCumprod(config, { extraSchedules: ['exp'] });
  }

  setTimesteps(steps: number): void {
    const schedule = sigmaSchedule(this.config, this.alphasCumprod, steps);
    const [firstSigma, ...laterSigmas] = schedule.sigmas;
    this.sigmas = Float32Array.from([firstSigma, ...laterSigmas.flatMap((s) => [s, s]), 0]);
    const [firstTimestep, ...laterTimesteps] = schedule.timesteps;
    this.timesteps = [firstTimestep, ...laterTimesteps.flatMap((t) => [t, t])];
    this.initNoiseSigma = initNoiseSigma(this.config, this.sigmas);
    this.pending = null;
    this.stepIndex = null;
  }

  scaleModelInput(sample: Float32Array, timestep: number): Float32Array {
    return scaleBySigma(sample, this.sigmas[this.currentIndex(timestep)]);
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array): StepResult {
    assertSameLength(modelOutput, sample);
    const index = this.currentIndex(timestep);
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
    this.stepIndex = index + 1;
    return { prevSample, predOriginalSample };
  }

  private currentIndex(timestep: number): number {
    this.stepIndex ??= indexForTimestep(this.timesteps, timestep, 'error');
    return this.stepIndex;
  }
}
