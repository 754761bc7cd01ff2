/** "512x512" → width and height, multiples of 8 as latents need. */
export function parseSize(text: string): { width: number; height: number } {
  const match = /^(\d+)x(\d+)$/i.exec(text.trim());
  const width = Number(match?.[1]);
  const height = Number(match?.[2]);
  if (!match || width <= 0 || height <= 0 || width % 8 !== 0 || height % 8 !== 0) {
    throw new Error(`--size must be WIDTHxHEIGHT in multiples of 8, e.g. 512x512 (got ${text})`);
  }
  return { width, height };
}

/** A whole number of at least `least`, for --steps, --runs and the like. */
export function parseCount(name: string, text: string, least = 1): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < least) throw new Error(`--${name} must be a whole number of at least ${least} (got ${text})`);
  return value;
}
