import extractChunks from 'png-chunks-extract';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { encodePng, readPngParameters } from '../src/image/png.ts';

function gradient(width: number, height: number) {
  const pixels = new Uint8Array(width * height * 3);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 7) % 256;
  return { pixels, width, height };
}

describe('PNG output', () => {
  it('keeps every pixel and carries the parameters as a tEXt chunk', async () => {
    const image = gradient(24, 16);
    const png = await encodePng(image, 'a fox\nSteps: 20, Seed: 7');
    const decoded = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    expect(decoded.info).toMatchObject({ width: 24, height: 16, channels: 3 });
    expect(new Uint8Array(decoded.data)).toEqual(image.pixels);
    const names = extractChunks(png).map((chunk) => chunk.name);
    expect(names).toContain('tEXt');
    expect(names.at(-1)).toBe('IEND');
    expect(readPngParameters(png)).toBe('a fox\nSteps: 20, Seed: 7');
  });

  it('stores text beyond Latin-1 as UTF-8 iTXt, as PIL does', async () => {
    const text = '富士山と桜 🌸\nSteps: 4, Seed: 1';
    const png = await encodePng(gradient(8, 8), text);
    expect(extractChunks(png).map((chunk) => chunk.name)).toContain('iTXt');
    expect(readPngParameters(png)).toBe(text);
    expect((await sharp(png).metadata()).format).toBe('png');
  });

  it('answers undefined for a PNG without parameters and for bytes that are not a PNG', async () => {
    const plain = await sharp(Buffer.alloc(12), { raw: { width: 2, height: 2, channels: 3 } }).png().toBuffer();
    expect(readPngParameters(plain)).toBeUndefined();
    expect(readPngParameters(new Uint8Array([1, 2, 3]))).toBeUndefined();
  });
});
