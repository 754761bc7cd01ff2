/**
 * What img2img changes in the denoising loop, as diffusers' StableDiffusionImg2ImgPipeline: the run covers only the
 * last `strength` of the schedule, and starts from the picture's latents noised to that point.
 */
import type { NoiseSource, Scheduler } from '../schedulers/index.ts';
import type { VaeEncoder } from './vae-encoder.ts';
import type { RgbImage } from './vae.ts';

/**
 * `get_timesteps`: the schedule's last `int(steps · strength)` steps, the scheduler told to begin there. Throws
 * when that is no step at all (diffusers refuses it too).
 */
export function timestepsForStrength(scheduler: Scheduler, steps: number, strength: number): number[] {
  const denoisingSteps = Math.min(Math.floor(steps * strength), steps);
  if (denoisingSteps < 1) {
    throw new Error(`strength ${strength} of ${steps} steps leaves no step to run: use at least ${minimumSteps(strength)} steps or a higher strength`);
  }
  const beginIndex = (steps - denoisingSteps) * scheduler.order;
  scheduler.setBeginIndex(beginIndex);
  return scheduler.timesteps.slice(beginIndex);
}

/** The fewest steps of which `strength` still runs one. */
export function minimumSteps(strength: number): number {
  let steps = 1;
  while (Math.floor(steps * strength) < 1) steps += 1;
  return steps;
}

/**
 * `prepare_latents`: the picture encoded and sampled with the job's generator (its first draw), then noised to the
 * first timestep of the run with the generator's next draw. No `init_noise_sigma` scaling: the scheduler's
 * `add_noise` puts the latents at that timestep's noise level.
 */
export async function noisedImageLatents(
  encoder: VaeEncoder,
  picture: RgbImage,
  generator: NoiseSource,
  scheduler: Scheduler,
  firstTimestep: number,
): Promise<Float32Array> {
  const clean = await encoder.encode(picture, generator);
  const noise = generator.randn(clean.length);
  return scheduler.addNoise(clean, noise, firstTimestep);
}
