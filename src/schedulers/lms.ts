import { predictionType, type SchedulerConfig, trainingAlphasCumprod } from './config.ts';
import { KDiffusionScheduler, predictOriginal, sigmaSchedule, type StepSchedule } from './k-diffusion.ts';
import type { StepResult } from './scheduler.ts';
import { rejectUnsupportedSigmas } from './sigmas.ts';

/** `LMSDiscreteScheduler.__init__` defaults (diffusers 0.35). */
export const LMS_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear',
  trained_betas: null,
  use_karras_sigmas: false,
  use_exponential_sigmas: false,
  use_beta_sigmas: false,
  prediction_type: 'epsilon',
  timestep_spacing: 'linspace',
  steps_offset: 0,
} as const;

/** diffusers' `step(order=4)` default: up to four past derivatives. */
const MAX_ORDER = 4;

/** 4-point Gauss–Legendre nodes and weights on [-1, 1]: exact for the cubic integrands below. */
const GAUSS_NODES = [-0.8611363115940526, -0.3399810435848563, 0.3399810435848563, 0.8611363115940526];
const GAUSS_WEIGHTS = [0.3478548451374538, 0.6521451548625461, 0.6521451548625461, 0.3478548451374538];

/**
 * Linear multistep (Adams–Bashforth in sigma) as diffusers' `LMSDiscreteScheduler`: each step integrates the
 * Lagrange polynomial through the last (up to 4) derivatives from sigma_i to sigma_{i+1}.
 */
export class LMSDiscreteScheduler extends KDiffusionScheduler {
  private derivatives: Float32Array[] = [];

  constructor(config: SchedulerConfig) {
    rejectUnsupportedSigmas(config);
    super(config, predictionType(config), trainingAlphasCumprod(config));
  }

  override setTimesteps(steps: number): void {
    super.setTimesteps(steps);
    this.derivatives = [];
  }

  protected override buildSchedule(steps: number): StepSchedule {
    const schedule = sigmaSchedule(this.config, this.alphasCumprod, steps, { karrasIgnoresConfigRange: true });
    return { timesteps: schedule.timesteps, sigmas: Float32Array.from([...schedule.sigmas, 0]) };
  }

  protected override stepAt(index: number, modelOutput: Float32Array, sample: Float32Array): StepResult {
    const sigma = this.sigmas[index];
    const predOriginalSample = predictOriginal(this.prediction, modelOutput, sample, sigma);
    this.derivatives.push(sample.map((x, i) => (x - predOriginalSample[i]) / sigma));
    if (this.derivatives.length > MAX_ORDER) this.derivatives.shift();

    // The polynomial's order follows the step index, not the derivatives at hand: a run begun mid-schedule
    // (img2img) has fewer, and diffusers' zip() then uses as many coefficients as there are derivatives.
    const order = Math.min(index + 1, MAX_ORDER);
    const newestFirst = [...this.derivatives].reverse();
    const terms = Math.min(order, newestFirst.length);
    const coefficients = Array.from({ length: terms }, (_, k) => this.lmsCoefficient(order, index, k));
    const prevSample = sample.map((x, i) => {
      let sum = 0;
      for (let k = 0; k < terms; k++) sum += coefficients[k] * newestFirst[k][i];
      return x + sum;
    });
    return { prevSample, predOriginalSample };
  }

  /** The integral from sigma_t to sigma_{t+1} of the Lagrange basis polynomial of the derivative `k` steps back. */
  private lmsCoefficient(order: number, t: number, k: number): number {
    const sigmas = this.sigmas;
    const basis = (tau: number) => {
      let product = 1;
      for (let j = 0; j < order; j++) {
        if (j !== k) product *= (tau - sigmas[t - j]) / (sigmas[t - k] - sigmas[t - j]);
      }
      return product;
    };
    const from = sigmas[t];
    const to = sigmas[t + 1];
    const half = (to - from) / 2;
    const mid = (to + from) / 2;
    return half * GAUSS_NODES.reduce((sum, node, n) => sum + GAUSS_WEIGHTS[n] * basis(mid + half * node), 0);
  }
}
