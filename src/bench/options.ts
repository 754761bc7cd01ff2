import { parseSize, type ImageSize } from '../jobs/options.ts';

/** "512x512" → width and height, multiples of 8 as latents need. */
export function parseBenchSize(text: string): ImageSize {
  const size = parseSize(text);
  if (!size || size.width % 8 !== 0 || size.height % 8 !== 0) {
    throw new Error(`--size must be WIDTHxHEIGHT in multiples of 8, e.g. 512x512 (got ${text})`);
  }
  return size;
}

/** A whole number of at least `least`, for --steps, --runs and the like. */
export function parseCount(name: string, text: string, least = 1): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < least) throw new Error(`--${name} must be a whole number of at least ${least} (got ${text})`);
  return value;
}
