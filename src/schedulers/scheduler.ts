/** Where stochastic schedulers draw their noise: the pipeline's torch-compatible generator. */
export interface NoiseSource {
  /** `count` float32 standard normals, exactly as `torch.randn(count, generator=g)` draws them. */
  randn(count: number): Float32Array;
}

export interface StepOptions {
  /** The generator that drew the initial latents; stochastic schedulers continue its stream. */
  generator?: NoiseSource;
  /** DDIM's eta (0 = deterministic). Ignored by schedulers that do not take it. */
  eta?: number;
}

export interface StepResult {
  prevSample: Float32Array;
  /** The model's estimate of the clean latents, where the scheduler computes one. */
  predOriginalSample?: Float32Array;
}

/**
 * The diffusers scheduler surface. Latents are flat float32 arrays of one image's latents
 * ([1, 4, H/8, W/8] in C order); a scheduler never needs the shape.
 */
export interface Scheduler {
  /** One entry per U-Net call, set by setTimesteps. Integer values for PNDM/DDIM/DPM/UniPC/LCM, float for the Euler family. */
  readonly timesteps: readonly number[];
  /**
   * True where diffusers keeps `timesteps` as int64 (PNDM, DDIM, DPM-Solver, UniPC, LCM), so the pipeline
   * feeds the U-Net an int64 timestep; false for the Euler family, LMS and Heun (float32 timesteps).
   */
  readonly integerTimesteps: boolean;
  /** The scale of the initial noise (`init_noise_sigma`). */
  readonly initNoiseSigma: number;
  /** Model calls per step (diffusers' `order`): 2 for Heun, whose timesteps repeat, 1 for the others. */
  readonly order: number;
  /** Sets `timesteps` for `numInferenceSteps` steps and forgets any earlier run (and begin index). */
  setTimesteps(numInferenceSteps: number): void;
  /**
   * The run starts at `timesteps[index]` rather than at the first one (img2img, diffusers' `set_begin_index`):
   * schedulers that count steps start counting there. DDIM and PNDM find everything from the timestep itself.
   */
  setBeginIndex(index: number): void;
  scaleModelInput(sample: Float32Array, timestep: number): Float32Array;
  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, options?: StepOptions): StepResult;
  /**
   * Clean latents noised to the noise level of `timestep` (the begin index's, for the schedulers that have one),
   * as diffusers' `add_noise`: where a run that starts at that timestep expects its first sample.
   */
  addNoise(original: Float32Array, noise: Float32Array, timestep: number): Float32Array;
}
