import sharp, { type Metadata } from 'sharp';
import { RequestError } from '../pipeline/types.ts';
import type { RgbImage } from '../pipeline/vae.ts';

/** The picture formats img2img takes. */
export const INIT_IMAGE_FORMATS = ['png', 'jpeg', 'webp'] as const;

/** The most pixels a picture to start from may have (a 24-megapixel photo fits; sharp refuses more). */
export const MAX_INIT_IMAGE_PIXELS = 25_000_000;

/** Whatever is wrong with a picture given to start from: its message is meant for the person who gave it. */
export class InitImageError extends RequestError {
  override name = 'InitImageError';
}

export interface PictureSize {
  width: number;
  height: number;
}

/** What a picture is, read from its header only: format and size as shown (EXIF rotation applied). */
export async function inspectPicture(data: Uint8Array, maxPixels: number): Promise<PictureSize & { format: string }> {
  let metadata: Metadata;
  try {
    metadata = await sharp(data).metadata();
  } catch {
    throw new InitImageError('that file is not a picture (PNG, JPEG or WebP)');
  }
  const { format } = metadata;
  // EXIF orientations 5-8 turn the picture a quarter: it shows as height x width.
  const turned = (metadata.orientation ?? 1) >= 5;
  const width = turned ? metadata.height : metadata.width;
  const height = turned ? metadata.width : metadata.height;
  if (!format || !(INIT_IMAGE_FORMATS as readonly string[]).includes(format) || !width || !height) {
    throw new InitImageError(`that file is ${format ? `a ${format.toUpperCase()} image` : 'not a picture'}; send a PNG, JPEG or WebP`);
  }
  if (width * height > maxPixels) {
    throw new InitImageError(`that picture is ${width}x${height} (${formatMegapixels(width * height)}); pictures up to ${formatMegapixels(maxPixels)} are taken`);
  }
  return { format, width, height };
}

/**
 * The picture as 8-bit RGB at `size`: transparency flattened onto white (as AUTOMATIC1111 does), EXIF rotation
 * applied, and scaled to cover the size and centre-cropped (Lanczos) when its size differs, so it is never stretched.
 */
export async function loadInitImage(data: Uint8Array, size: PictureSize, maxPixels: number): Promise<RgbImage> {
  const { width, height } = await inspectPicture(data, maxPixels);
  let picture = sharp(data, { limitInputPixels: maxPixels }).rotate().flatten({ background: '#ffffff' });
  if (width !== size.width || height !== size.height) {
    picture = picture.resize(size.width, size.height, { fit: 'cover', position: 'centre', kernel: 'lanczos3' });
  }
  const { data: pixels, info } = await picture.removeAlpha().raw().toBuffer({ resolveWithObject: true });
  if (info.channels !== 3 || info.width !== size.width || info.height !== size.height) {
    throw new Error(`sharp gave a ${info.width}x${info.height}x${info.channels} picture, expected ${size.width}x${size.height}x3`);
  }
  return { pixels: new Uint8Array(pixels.buffer, pixels.byteOffset, pixels.length), width: size.width, height: size.height };
}

/**
 * The size to draw a picture of `picture`'s proportions at: its own size in multiples of `multiple`, scaled down to
 * the model's native area when larger (models draw poorly far above it), at most `maxSide` a side.
 */
export function sizeForPicture(picture: PictureSize, model: { nativeWidth: number; nativeHeight: number; sizeMultiple: number }, maxSide: number): PictureSize {
  const nativeArea = model.nativeWidth * model.nativeHeight;
  const area = picture.width * picture.height;
  const scale = Math.min(1, Math.sqrt(nativeArea / area), maxSide / picture.width, maxSide / picture.height);
  const side = (length: number) => Math.min(Math.floor(maxSide / model.sizeMultiple), Math.max(1, Math.round((length * scale) / model.sizeMultiple))) * model.sizeMultiple;
  return { width: side(picture.width), height: side(picture.height) };
}

function formatMegapixels(pixels: number): string {
  return `${(pixels / 1e6).toFixed(1)} megapixels`;
}
