import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { InitImageError, inspectPicture, loadInitImage, sizeForPicture } from '../src/image/init-image.ts';

const LIMIT = 1_000_000;

/** A picture whose left half is red and right half blue, in the given format. */
async function halves(width: number, height: number, format: 'png' | 'jpeg' | 'webp' | 'gif', options: { alpha?: number; orientation?: number } = {}): Promise<Buffer> {
  const channels = options.alpha === undefined ? 3 : 4;
  const raw = Buffer.alloc(width * height * channels);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const at = (y * width + x) * channels;
      raw.set(x < width / 2 ? [255, 0, 0] : [0, 0, 255], at);
      if (channels === 4) raw[at + 3] = options.alpha!;
    }
  }
  let picture = sharp(raw, { raw: { width, height, channels } });
  if (options.orientation) picture = picture.withMetadata({ orientation: options.orientation });
  return picture.toFormat(format, format === 'png' || format === 'webp' ? { lossless: true } : { quality: 95 }).toBuffer();
}

function pixelAt(image: { pixels: Uint8Array; width: number }, x: number, y: number): number[] {
  const at = (y * image.width + x) * 3;
  return Array.from(image.pixels.subarray(at, at + 3));
}

describe('pictures to start from', () => {
  it('takes PNG, JPEG and WebP and reads their size from the header', async () => {
    for (const format of ['png', 'jpeg', 'webp'] as const) {
      expect(await inspectPicture(await halves(40, 20, format), LIMIT)).toEqual({ format, width: 40, height: 20 });
    }
  });

  it('refuses what is not a picture, other formats and too many pixels, saying which', async () => {
    await expect(inspectPicture(Buffer.from('hello, not an image'), LIMIT)).rejects.toThrow(new InitImageError('that file is not a picture (PNG, JPEG or WebP)'));
    await expect(inspectPicture(await halves(8, 8, 'gif'), LIMIT)).rejects.toThrow('that file is a GIF image; send a PNG, JPEG or WebP');
    await expect(inspectPicture(await halves(2000, 600, 'png'), LIMIT)).rejects.toThrow('that picture is 2000x600 (1.2 megapixels); pictures up to 1.0 megapixels are taken');
  });

  it('keeps a picture of the requested size as it is, and covers another size without stretching', async () => {
    const same = await loadInitImage(await halves(32, 16, 'png'), { width: 32, height: 16 }, LIMIT);
    expect(pixelAt(same, 0, 0)).toEqual([255, 0, 0]);
    expect(pixelAt(same, 31, 15)).toEqual([0, 0, 255]);
    // 64x16 covering 16x16 keeps the middle: the left quarter is cut, so red and blue still meet in the centre.
    const square = await loadInitImage(await halves(64, 16, 'png'), { width: 16, height: 16 }, LIMIT);
    expect(square.pixels).toHaveLength(16 * 16 * 3);
    expect(pixelAt(square, 2, 8)).toEqual([255, 0, 0]);
    expect(pixelAt(square, 13, 8)).toEqual([0, 0, 255]);
  });

  it('flattens transparency onto white and turns a picture as its EXIF orientation says', async () => {
    const clear = await loadInitImage(await halves(8, 8, 'png', { alpha: 0 }), { width: 8, height: 8 }, LIMIT);
    expect(pixelAt(clear, 1, 1)).toEqual([255, 255, 255]);
    // Orientation 6: shown turned a quarter clockwise, so the red left half ends up on top.
    const jpeg = await halves(32, 16, 'jpeg', { orientation: 6 });
    expect(await inspectPicture(jpeg, LIMIT)).toMatchObject({ width: 16, height: 32 });
    const turned = await loadInitImage(jpeg, { width: 16, height: 32 }, LIMIT);
    expect(pixelAt(turned, 8, 2)[0]).toBeGreaterThan(200);
    expect(pixelAt(turned, 8, 29)[2]).toBeGreaterThan(200);
  });

  it('draws a picture at its own proportions: its size in the model’s multiples, scaled down to the native area', () => {
    const sd15 = { nativeWidth: 512, nativeHeight: 512, sizeMultiple: 64 };
    expect(sizeForPicture({ width: 64, height: 64 }, { ...sd15, sizeMultiple: 8 }, 2048)).toEqual({ width: 64, height: 64 });
    expect(sizeForPicture({ width: 4032, height: 3024 }, sd15, 2048)).toEqual({ width: 576, height: 448 });
    expect(sizeForPicture({ width: 500, height: 700 }, sd15, 2048)).toEqual({ width: 448, height: 576 });
    expect(sizeForPicture({ width: 300, height: 200 }, sd15, 2048)).toEqual({ width: 320, height: 192 });
    expect(sizeForPicture({ width: 10, height: 3000 }, sd15, 2048)).toEqual({ width: 64, height: 2048 });
  });
});
