/** Shared pieces of the k-diffusion-style schedulers (Euler, Euler a, LMS, Heun), which step in sigma space. */
import { type PredictionType, type SchedulerConfig, torchLinspaceFloat32 } from './config.ts';
import {
  exponentialSigmas,
  interpolateSigmas,
  karrasSigmas,
  logFloat32,
  sigmaRange,
  sigmaToTimestep,
  trainingSigmas,
} from './sigmas.ts';
import { spacedTimesteps, timestepSpacing, validateStepCount } from './timesteps.ts';

export interface SigmaScheduleOptions {
  /** LMS builds its Karras schedule from the interpolated sigmas only, ignoring a configured sigma_min/max. */
  karrasIgnoresConfigRange?: boolean;
  /** EulerDiscrete's `interpolation_type`; the others always interpolate linearly. */
  logLinear?: boolean;
}

export interface SigmaSchedule {
  /** float32 values, descending. */
  timesteps: number[];
  /** One per timestep (one more with log-linear interpolation, as in diffusers); the final sigma is not included. */
  sigmas: number[];
}

/** Timesteps and sigmas as set_timesteps builds them for the k-diffusion-style schedulers. */
export function sigmaSchedule(
  config: SchedulerConfig,
  alphasCumprod: Float32Array,
  steps: number,
  options: SigmaScheduleOptions = {},
): SigmaSchedule {
  const trainSteps = alphasCumprod.length;
  validateStepCount(steps, trainSteps);
  let timesteps = spacedTimesteps(timestepSpacing(config), trainSteps, steps, config.integer('steps_offset'), false).map(Math.fround);
  const training = trainingSigmas(alphasCumprod);
  const logSigmas = logFloat32(training);
  let sigmas = options.logLinear
    ? Array.from(torchLinspaceFloat32(logSigmas[trainSteps - 1], logSigmas[0], steps + 1), (v) => Math.fround(Math.exp(v)))
    : interpolateSigmas(timesteps, training);

  const toTimesteps = (values: number[]) => values.map((sigma) => Math.fround(sigmaToTimestep(sigma, logSigmas)));
  if (config.accepts('use_karras_sigmas') && config.boolean('use_karras_sigmas')) {
    const range = options.karrasIgnoresConfigRange ? { min: sigmas[sigmas.length - 1], max: sigmas[0] } : sigmaRange(config, sigmas);
    sigmas = karrasSigmas(range.min, range.max, steps);
    timesteps = toTimesteps(sigmas);
  } else if (config.accepts('use_exponential_sigmas') && config.boolean('use_exponential_sigmas')) {
    const range = sigmaRange(config, sigmas);
    sigmas = exponentialSigmas(range.min, range.max, steps);
    timesteps = toTimesteps(sigmas);
  }
  return { timesteps, sigmas };
}

/** `init_noise_sigma`: the largest sigma, or sqrt(sigma_max^2 + 1) with "leading" spacing. */
export function initNoiseSigma(config: SchedulerConfig, sigmas: Float32Array): number {
  const max = sigmas.reduce((a, b) => Math.max(a, b), -Infinity);
  if (timestepSpacing(config) !== 'leading') return max;
  return Math.fround(Math.sqrt(Math.fround(Math.fround(max * max) + 1)));
}

/** `sample / sqrt(sigma^2 + 1)`, the input scaling of the k-diffusion samplers (float32 like torch). */
export function scaleBySigma(sample: Float32Array, sigma: number): Float32Array {
  const denominator = Math.fround(Math.sqrt(Math.fround(Math.fround(sigma * sigma) + 1)));
  return sample.map((v) => v / denominator);
}

/** The denoised estimate x0 from the model output at noise level sigma. */
export function predictOriginal(
  type: PredictionType,
  modelOutput: Float32Array,
  sample: Float32Array,
  sigma: number,
): Float32Array {
  switch (type) {
    case 'epsilon':
      return sample.map((x, i) => x - sigma * modelOutput[i]);
    case 'v_prediction': {
      const outputScale = -sigma / Math.sqrt(sigma * sigma + 1);
      const sampleScale = 1 / (sigma * sigma + 1);
      return sample.map((x, i) => modelOutput[i] * outputScale + x * sampleScale);
    }
    case 'sample':
      return Float32Array.from(modelOutput);
  }
}
