import type { LatentSize } from './unet.ts';
import { toRgb8, type RgbImage, type VaeDecoder } from './vae.ts';

/**
 * Each latent channel's contribution to R, G and B: a least-squares fit of the VAE's output to its latents
 * (ComfyUI's `latent_rgb_factors`), mapping latents as the U-Net sees them to about [-1, 1].
 */
type LatentRgbFactors = readonly (readonly [number, number, number])[];

/** SD 1.x and 2.x share a VAE (scaling factor 0.18215). */
const SD_LATENT_RGB: LatentRgbFactors = [
  [0.3512, 0.2297, 0.3227],
  [0.325, 0.4974, 0.235],
  [-0.2829, 0.1762, 0.2721],
  [-0.212, -0.2616, -0.7177],
];

/** SDXL's VAE (scaling factor 0.13025). */
const SDXL_LATENT_RGB: LatentRgbFactors = [
  [0.392, 0.4054, 0.4549],
  [-0.2634, -0.0196, 0.0653],
  [0.0568, 0.1687, -0.0755],
  [-0.3112, -0.2359, -0.2076],
];
const SDXL_SCALING_FACTOR = 0.13025;

export type PreviewMethod = 'tiny-decoder' | 'linear';

/**
 * Turns latents — best, a step's prediction of the final latents — into a picture for a preview: with the tiny
 * decoder (TAESD) when one is loaded, at the image's size; else with a linear latent→RGB map at one pixel per
 * latent (an eighth of the size), which costs next to nothing. The one decoding path for anything that shows a
 * generation while it runs.
 */
export class LatentPreviewer {
  private readonly factors: LatentRgbFactors;
  /** What each method's last preview cost per latent pixel, so that the next one (in any job) can be budgeted. */
  private readonly costPerLatent = new Map<PreviewMethod, number>();

  /** `scalingFactor`: the model's own VAE's, which tells its latent space (SD or SDXL) for the linear map. */
  constructor(
    private readonly tinyDecoder: VaeDecoder | undefined,
    scalingFactor: number,
  ) {
    this.factors = scalingFactor === SDXL_SCALING_FACTOR ? SDXL_LATENT_RGB : SD_LATENT_RGB;
  }

  /** The methods this previewer has, best first: the tiny decoder when loaded, and the linear map. */
  get methods(): readonly PreviewMethod[] {
    return this.tinyDecoder ? ['tiny-decoder', 'linear'] : ['linear'];
  }

  decode(latents: Float32Array, size: LatentSize, method: PreviewMethod = this.methods[0]): Promise<RgbImage> {
    return method === 'tiny-decoder' && this.tinyDecoder ? this.tinyDecoder.decode(latents, size) : Promise.resolve(this.linear(latents, size));
  }

  /** What a preview by `method` at `size` is expected to cost, from the last one's; undefined before the first. */
  expectedCostMs(method: PreviewMethod, { width, height }: LatentSize): number | undefined {
    const perLatent = this.costPerLatent.get(method);
    return perLatent === undefined ? undefined : perLatent * width * height;
  }

  recordCost(method: PreviewMethod, { width, height }: LatentSize, ms: number): void {
    this.costPerLatent.set(method, ms / (width * height));
  }

  /**
   * Times the tiny decoder at `size` once it has run (a session's first run also sets it up), so that previews are
   * budgeted from the first job on instead of that job paying for one preview whose cost was not known.
   */
  async warmUp(size: LatentSize): Promise<void> {
    if (!this.tinyDecoder) return;
    const latents = new Float32Array(4 * size.width * size.height);
    await this.tinyDecoder.decode(latents, size);
    const started = performance.now();
    await this.tinyDecoder.decode(latents, size);
    this.recordCost('tiny-decoder', size, performance.now() - started);
  }

  private linear(latents: Float32Array, { width, height }: LatentSize): RgbImage {
    const plane = width * height;
    const planar = new Float32Array(3 * plane);
    for (const [channel, weights] of this.factors.entries()) {
      const offset = channel * plane;
      for (let i = 0; i < plane; i++) {
        const value = latents[offset + i];
        planar[i] += value * weights[0];
        planar[plane + i] += value * weights[1];
        planar[2 * plane + i] += value * weights[2];
      }
    }
    return { pixels: toRgb8(planar, width, height), width, height };
  }
}
