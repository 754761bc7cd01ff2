/** Shared pieces of the schedulers that step on the training ᾱ table at integer timesteps (DDIM, PNDM, LCM). */
import type { PredictionType, SchedulerConfig } from './config.ts';
import type { Scheduler, StepOptions, StepResult } from './scheduler.ts';
import { noiseToAlpha } from './sample-ops.ts';

/**
 * The surface DDIM, PNDM and LCM share: integer timesteps that index `alphas_cumprod`, an unscaled model input
 * and unit initial noise, and the ᾱ a step lands on once it passes timestep 0 (`final_alpha_cumprod`).
 */
export abstract class AlphaCumprodScheduler implements Scheduler {
  readonly integerTimesteps = true;
  readonly initNoiseSigma = 1;
  readonly order = 1;
  timesteps: number[] = [];
  /** 1 with `set_alpha_to_one`, else ᾱ_0. */
  private readonly finalAlphaCumprod: number;

  constructor(
    readonly config: SchedulerConfig,
    protected readonly prediction: PredictionType,
    readonly alphasCumprod: Float32Array,
  ) {
    this.finalAlphaCumprod = config.boolean('set_alpha_to_one') ? 1 : alphasCumprod[0];
  }

  abstract setTimesteps(steps: number): void;

  abstract step(modelOutput: Float32Array, timestep: number, sample: Float32Array, options?: StepOptions): StepResult;

  scaleModelInput(sample: Float32Array): Float32Array {
    return sample;
  }

  /** DDIM and PNDM take no begin index in diffusers: each step works from its timestep alone. */
  setBeginIndex(_index: number): void {}

  addNoise(original: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    return noiseToAlpha(original, noise, this.alphaAt(timestep));
  }

  protected alphaAt(timestep: number): number {
    if (!Number.isInteger(timestep) || timestep < 0 || timestep >= this.alphasCumprod.length) {
      throw new RangeError(`${this.config.className} timestep must be an integer in 0..${this.alphasCumprod.length - 1}, got ${timestep}`);
    }
    return this.alphasCumprod[timestep];
  }

  /** ᾱ at the timestep a step goes to: the final ᾱ when that is below 0. */
  protected alphaAtPrevious(prevTimestep: number): number {
    return prevTimestep >= 0 ? this.alphaAt(prevTimestep) : this.finalAlphaCumprod;
  }
}
