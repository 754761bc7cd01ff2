import sharp from 'sharp';
import type { RgbImage } from '../pipeline/vae.ts';

/** An in-progress picture of an image, ready to show: what a step predicts the image to become. */
export interface PreviewImage {
  /** The step after which it was decoded, of the image's `totalSteps`. */
  step: number;
  totalSteps: number;
  jpeg: Uint8Array;
}

/** Previews are shown small: the longest side this many pixels (linear previews, an eighth of the size, scaled up). */
const PREVIEW_SIDE = 384;
const PREVIEW_QUALITY = 75;

/** A small JPEG of a decoded preview (tens of kilobytes), in a buffer of its own so a worker can transfer it. */
export async function encodePreview(image: RgbImage): Promise<Uint8Array> {
  const scale = PREVIEW_SIDE / Math.max(image.width, image.height);
  const jpeg = await sharp(image.pixels, { raw: { width: image.width, height: image.height, channels: 3 } })
    .resize(Math.max(1, Math.round(image.width * scale)), Math.max(1, Math.round(image.height * scale)), { kernel: scale > 1 ? 'cubic' : 'lanczos3' })
    .jpeg({ quality: PREVIEW_QUALITY })
    .toBuffer();
  return new Uint8Array(jpeg);
}
