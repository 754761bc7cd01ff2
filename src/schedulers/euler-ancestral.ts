import { predictionType, type SchedulerConfig, trainingAlphasCumprod } from './config.ts';
import { KDiffusionScheduler, predictOriginal, sigmaSchedule, type StepSchedule } from './k-diffusion.ts';
import type { StepOptions, StepResult } from './scheduler.ts';
import { drawNoise, requireGenerator } from './sample-ops.ts';

/** `EulerAncestralDiscreteScheduler.__init__` defaults (diffusers 0.35). */
export const EULER_ANCESTRAL_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear',
  trained_betas: null,
  prediction_type: 'epsilon',
  timestep_spacing: 'linspace',
  steps_offset: 0,
  rescale_betas_zero_snr: false,
} as const;

/**
 * Ancestral Euler ("Euler a"): an Euler step down to sigma_down, then fresh noise of size sigma_up, so that
 * sigma_down^2 + sigma_up^2 = sigma_next^2. Draws one noise tensor per step, including the last.
 */
export class EulerAncestralDiscreteScheduler extends KDiffusionScheduler {
  constructor(config: SchedulerConfig) {
    // diffusers raises NotImplementedError for "sample" in this scheduler.
    super(config, predictionType(config, ['epsilon', 'v_prediction']), trainingAlphasCumprod(config, { floorTerminalAlpha: true }));
  }

  protected override buildSchedule(steps: number): StepSchedule {
    const schedule = sigmaSchedule(this.config, this.alphasCumprod, steps);
    return { timesteps: schedule.timesteps, sigmas: Float32Array.from([...schedule.sigmas, 0]) };
  }

  protected override stepAt(index: number, modelOutput: Float32Array, sample: Float32Array, options?: StepOptions): StepResult {
    const generator = requireGenerator(options, 'EulerAncestralDiscreteScheduler');
    const f = Math.fround;
    const sigma = this.sigmas[index];
    const sigmaTo = this.sigmas[index + 1];
    const predOriginalSample = predictOriginal(this.prediction, modelOutput, sample, sigma);
    // Scalar math in float32, as diffusers does it on 0-dim tensors (sigma_down can round to 0 at the end).
    const sigmaFromSq = f(sigma * sigma);
    const sigmaToSq = f(sigmaTo * sigmaTo);
    const sigmaUp = f(Math.sqrt(f(f(sigmaToSq * f(sigmaFromSq - sigmaToSq)) / sigmaFromSq)));
    const sigmaDown = f(Math.sqrt(f(sigmaToSq - f(sigmaUp * sigmaUp))));
    const dt = f(sigmaDown - sigma);
    const noise = drawNoise(generator, sample);
    const prevSample = sample.map((x, i) => x + ((x - predOriginalSample[i]) / sigma) * dt + noise[i] * sigmaUp);
    return { prevSample, predOriginalSample };
  }
}
