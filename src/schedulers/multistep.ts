/**
 * Shared pieces of the multistep exponential-integrator solvers (DPM-Solver, UniPC), which work on the
 * variance-preserving sample x_t = alpha_t·x0 + sigma_t·noise and step in lambda = log(alpha_t / sigma_t).
 */
import type { PredictionType } from './config.ts';
import { assertSameLength } from './sample-ops.ts';
import { alphaSigma, sigmaToTimestep } from './sigmas.ts';
import { roundHalfEven } from './timesteps.ts';

/**
 * The `__init__` arguments DPMSolverMultistepScheduler and UniPCMultistepScheduler both take, with the defaults
 * both give them (diffusers 0.35). Each class adds its own solver keys.
 */
export const MULTISTEP_SOLVER_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear',
  trained_betas: null,
  solver_order: 2,
  prediction_type: 'epsilon',
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  sample_max_value: 1.0,
  lower_order_final: true,
  use_karras_sigmas: false,
  use_exponential_sigmas: false,
  use_beta_sigmas: false,
  use_flow_sigmas: false,
  flow_shift: 1.0,
  final_sigmas_type: 'zero',
  timestep_spacing: 'linspace',
  steps_offset: 0,
  rescale_betas_zero_snr: false,
  use_dynamic_shifting: false,
  time_shift_type: 'exponential',
} as const;

/** The data prediction x0 (what the "x0"/"++" solver forms integrate) from a model output at noise level `sigma`. */
export function dataPrediction(type: PredictionType, modelOutput: Float32Array, sample: Float32Array, sigma: number): Float32Array {
  const { alpha, sigma: sigmaT } = alphaSigma(sigma);
  switch (type) {
    case 'epsilon':
      return sample.map((x, i) => (x - sigmaT * modelOutput[i]) / alpha);
    case 'v_prediction':
      return sample.map((x, i) => alpha * x - sigmaT * modelOutput[i]);
    case 'sample':
      return Float32Array.from(modelOutput);
  }
}

/** The noise prediction (what the plain solver forms integrate) from a model output at noise level `sigma`. */
export function noisePrediction(type: PredictionType, modelOutput: Float32Array, sample: Float32Array, sigma: number): Float32Array {
  const { alpha, sigma: sigmaT } = alphaSigma(sigma);
  switch (type) {
    case 'epsilon':
      return Float32Array.from(modelOutput);
    case 'v_prediction':
      return sample.map((x, i) => alpha * modelOutput[i] + sigmaT * x);
    case 'sample':
      return sample.map((x, i) => (x - alpha * modelOutput[i]) / sigmaT);
  }
}

/**
 * x0 noised to the variance-preserving level of `sigma`: alpha_t·x0 + sigma_t·noise, in float32 like diffusers'
 * `add_noise` of DPM-Solver and UniPC.
 */
export function noiseToSigma(original: Float32Array, noise: Float32Array, sigma: number): Float32Array {
  assertSameLength(noise, original);
  const f = Math.fround;
  const alpha = f(1 / f(Math.sqrt(f(f(sigma * sigma) + 1))));
  const sigmaT = f(sigma * alpha);
  return original.map((x, i) => f(alpha * x) + f(sigmaT * noise[i]));
}

/**
 * The integer timesteps of a Karras, exponential or Lu sigma schedule: diffusers' fractional `_sigma_to_t`,
 * rounded half to even where `round` is set, then truncated to an integer.
 */
export function timestepsForSigmas(sigmas: readonly number[], logSigmas: Float32Array, round: boolean): number[] {
  return sigmas.map((sigma) => sigmaToTimestep(sigma, logSigmas)).map((t) => Math.trunc(round ? roundHalfEven(t) : t));
}
