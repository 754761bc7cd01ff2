import type { SchedulerConfig } from './config.ts';
import { linspace } from './timesteps.ts';

/** The training sigmas sqrt((1 - ᾱ) / ᾱ), one per training timestep, in float32 as torch computes them. */
export function trainingSigmas(alphasCumprod: Float32Array): Float32Array {
  return alphasCumprod.map((a) => Math.sqrt(Math.fround(Math.fround(1 - a) / a)));
}

/** `np.log` of a float32 array (the result stays float32). */
export function logFloat32(values: Float32Array): Float32Array {
  return values.map((v) => Math.log(v));
}

/** `np.interp(timesteps, arange(len(sigmas)), sigmas)`: the training sigmas at fractional timesteps. */
export function interpolateSigmas(timesteps: readonly number[], sigmas: Float32Array): number[] {
  const last = sigmas.length - 1;
  return timesteps.map((t) => {
    if (t <= 0) return sigmas[0];
    if (t >= last) return sigmas[last];
    const low = Math.floor(t);
    if (low === t) return sigmas[low];
    return (sigmas[low + 1] - sigmas[low]) * (t - low) + sigmas[low];
  });
}

/**
 * diffusers' `_sigma_to_t`: the fractional timestep whose sigma is `sigma`, interpolating linearly in log-sigma
 * between the two neighbouring training timesteps.
 */
export function sigmaToTimestep(sigma: number, logSigmas: Float32Array): number {
  const logSigma = Math.log(Math.max(sigma, 1e-10));
  let low = 0;
  for (let i = 0; i < logSigmas.length; i++) if (logSigma - logSigmas[i] >= 0) low = i;
  low = Math.min(low, logSigmas.length - 2);
  const lowLog = logSigmas[low];
  const highLog = logSigmas[low + 1];
  // numpy subtracts the two float32 neighbours in float32.
  const weight = Math.min(1, Math.max(0, (lowLog - logSigma) / Math.fround(lowLog - highLog)));
  return (1 - weight) * low + weight * (low + 1);
}

/** The noise schedule of Karras et al. 2022 (rho = 7) from sigmaMax down to sigmaMin. */
export function karrasSigmas(sigmaMin: number, sigmaMax: number, steps: number): number[] {
  const rho = 7.0;
  const minInvRho = sigmaMin ** (1 / rho);
  const maxInvRho = sigmaMax ** (1 / rho);
  return linspace(0, 1, steps).map((ramp) => (maxInvRho + ramp * (minInvRho - maxInvRho)) ** rho);
}

/** Sigmas evenly spaced in log space from sigmaMax down to sigmaMin. */
export function exponentialSigmas(sigmaMin: number, sigmaMax: number, steps: number): number[] {
  return linspace(Math.log(sigmaMax), Math.log(sigmaMin), steps).map(Math.exp);
}

/**
 * The range a Karras/exponential schedule spans: the config's `sigma_min`/`sigma_max` where present and set,
 * else the first and last of `descending` (which differ per scheduler: training or interpolated sigmas).
 */
export function sigmaRange(config: SchedulerConfig<string>, descending: ArrayLike<number>): { min: number; max: number } {
  return {
    min: config.optionalNumber('sigma_min') ?? descending[descending.length - 1],
    max: config.optionalNumber('sigma_max') ?? descending[0],
  };
}

/** The final sigma appended after the N step sigmas (`final_sigmas_type`). */
export function finalSigma(config: SchedulerConfig<'final_sigmas_type'>, alphasCumprod: Float32Array): number {
  const type = config.choice('final_sigmas_type', ['zero', 'sigma_min'] as const);
  return type === 'zero' ? 0 : trainingSigmas(alphasCumprod.subarray(0, 1))[0];
}

/** Rejects the sigma schedules diffusers offers that this port does not implement. */
export function rejectUnsupportedSigmas(config: SchedulerConfig<string>): void {
  config.requireUnset('use_beta_sigmas', 'beta-distribution sigmas need scipy in diffusers and are not ported');
  if (config.accepts('use_flow_sigmas')) config.requireUnset('use_flow_sigmas', 'flow-matching models are not supported');
  const exclusive = (['use_karras_sigmas', 'use_exponential_sigmas'] as const).filter((key) => config.flag(key));
  if (exclusive.length > 1) throw new Error(`${config.className}: only one of ${exclusive.join(', ')} can be set`);
}

/** A variance-preserving sigma as (alpha_t, sigma_t): alpha_t = 1/sqrt(sigma^2 + 1), sigma_t = sigma * alpha_t. */
export function alphaSigma(sigma: number): { alpha: number; sigma: number } {
  const alpha = 1 / Math.sqrt(sigma * sigma + 1);
  return { alpha, sigma: sigma * alpha };
}

/** log(alpha_t) - log(sigma_t): half the log signal-to-noise ratio. Infinite at sigma = 0. */
export function lambdaOf(sigma: number): number {
  const { alpha, sigma: sigmaT } = alphaSigma(sigma);
  return Math.log(alpha) - Math.log(sigmaT);
}
