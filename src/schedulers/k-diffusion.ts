/** Shared pieces of the k-diffusion-style schedulers (Euler, Euler a, LMS, Heun), which step in sigma space. */
import { type PredictionType, type SchedulerConfig, torchLinspaceFloat32 } from './config.ts';
import type { Scheduler, StepOptions, StepResult } from './scheduler.ts';
import { assertSameLength } from './sample-ops.ts';
import {
  exponentialSigmas,
  interpolateSigmas,
  karrasSigmas,
  logFloat32,
  sigmaRange,
  sigmaToTimestep,
  trainingSigmas,
} from './sigmas.ts';
import { indexForTimestep, spacedTimesteps, timestepSpacing } from './timesteps.ts';

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
  let timesteps = spacedTimesteps(config, trainSteps, steps, false).map(Math.fround);
  const training = trainingSigmas(alphasCumprod);
  const logSigmas = logFloat32(training);
  let sigmas = options.logLinear
    ? Array.from(torchLinspaceFloat32(logSigmas[trainSteps - 1], logSigmas[0], steps + 1), (v) => Math.fround(Math.exp(v)))
    : interpolateSigmas(timesteps, training);

  const toTimesteps = (values: number[]) => values.map((sigma) => Math.fround(sigmaToTimestep(sigma, logSigmas)));
  if (config.flag('use_karras_sigmas')) {
    const range = options.karrasIgnoresConfigRange ? { min: sigmas[sigmas.length - 1], max: sigmas[0] } : sigmaRange(config, sigmas);
    sigmas = karrasSigmas(range.min, range.max, steps);
    timesteps = toTimesteps(sigmas);
  } else if (config.flag('use_exponential_sigmas')) {
    const range = sigmaRange(config, sigmas);
    sigmas = exponentialSigmas(range.min, range.max, steps);
    timesteps = toTimesteps(sigmas);
  }
  return { timesteps, sigmas };
}

/** `init_noise_sigma`: the largest sigma, or sqrt(sigma_max^2 + 1) with "leading" spacing. */
function initNoiseSigma(config: SchedulerConfig, sigmas: Float32Array): number {
  const max = sigmas.reduce((a, b) => Math.max(a, b), -Infinity);
  if (timestepSpacing(config) !== 'leading') return max;
  return Math.fround(Math.sqrt(Math.fround(Math.fround(max * max) + 1)));
}

/** `sample / sqrt(sigma^2 + 1)`, the input scaling of the k-diffusion samplers (float32 like torch). */
function scaleBySigma(sample: Float32Array, sigma: number): Float32Array {
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

/** What `buildSchedule` returns: the `timesteps` and `sigmas` a k-diffusion scheduler then holds. */
export interface StepSchedule {
  timesteps: number[];
  sigmas: Float32Array;
}

/**
 * The surface the k-diffusion-style schedulers share: the model input is scaled by the current sigma, and the
 * step index is found from the first timestep passed in, then advanced by one per step (diffusers' `_step_index`).
 * A scheduler supplies its schedule and its update from one step index.
 */
export abstract class KDiffusionScheduler implements Scheduler {
  readonly integerTimesteps = false;
  readonly order: number = 1;
  timesteps: number[] = [];
  /** The sigma of each step index, then the sigma the last step ends at (float32). */
  sigmas: Float32Array = new Float32Array(0);
  initNoiseSigma = 1;
  private stepIndex: number | null = null;
  private beginIndex: number | null = null;

  constructor(
    readonly config: SchedulerConfig,
    protected readonly prediction: PredictionType,
    readonly alphasCumprod: Float32Array,
  ) {}

  setTimesteps(steps: number): void {
    const schedule = this.buildSchedule(steps);
    this.timesteps = schedule.timesteps;
    this.sigmas = schedule.sigmas;
    this.initNoiseSigma = initNoiseSigma(this.config, this.sigmas);
    this.stepIndex = null;
    this.beginIndex = null;
  }

  setBeginIndex(index: number): void {
    this.beginIndex = index;
  }

  scaleModelInput(sample: Float32Array, timestep: number): Float32Array {
    return scaleBySigma(sample, this.sigmas[this.currentIndex(timestep)]);
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, options?: StepOptions): StepResult {
    assertSameLength(modelOutput, sample);
    const index = this.currentIndex(timestep);
    const result = this.stepAt(index, modelOutput, sample, options);
    this.stepIndex = index + 1;
    return result;
  }

  /** x0 + sigma·noise at the sigma of the step about to be taken (diffusers' `add_noise`). */
  addNoise(original: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    assertSameLength(noise, original);
    const sigma = this.sigmas[this.stepIndex ?? this.beginIndex ?? indexForTimestep(this.timesteps, timestep, 'error')];
    return original.map((x, i) => x + Math.fround(noise[i] * sigma));
  }

  protected abstract buildSchedule(steps: number): StepSchedule;

  /** The update from step index `index` (whose sigma is `sigmas[index]`). */
  protected abstract stepAt(index: number, modelOutput: Float32Array, sample: Float32Array, options?: StepOptions): StepResult;

  private currentIndex(timestep: number): number {
    this.stepIndex ??= this.beginIndex ?? indexForTimestep(this.timesteps, timestep, 'error');
    return this.stepIndex;
  }
}
