import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { encodeStepsAnimation, type StepFrame } from '../src/image/steps-animation.ts';
import { pixelDifference } from './fixtures.ts';

const STEPS = 12;

/** A smooth picture that changes with `phase`, as an image forming does. */
async function picture(width: number, height: number, phase: number, format: 'jpeg' | 'png'): Promise<Uint8Array> {
  const pixels = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const at = (y * width + x) * 3;
      pixels[at] = (x * 255) / width;
      pixels[at + 1] = (y * 255) / height;
      pixels[at + 2] = 128 + 127 * Math.sin((x + y) / 9 + phase);
    }
  }
  const image = sharp(pixels, { raw: { width, height, channels: 3 } });
  return new Uint8Array(await (format === 'jpeg' ? image.jpeg({ quality: 75 }) : image.png()).toBuffer());
}

async function rgb(image: Uint8Array | Buffer, page = 0): Promise<Buffer> {
  return sharp(image, { page }).removeAlpha().raw().toBuffer();
}

function meanDifference(a: Buffer, b: Buffer): number {
  return pixelDifference(a, b).mean;
}

describe('encodeStepsAnimation', () => {
  let frames: StepFrame[];
  let finalImage: Uint8Array;
  beforeAll(async () => {
    // Previews come after every step but the last, smaller than the image (as the pipeline's JPEG previews are).
    frames = await Promise.all(Array.from({ length: STEPS - 1 }, async (_, index) => ({ step: index + 1, image: await picture(96, 64, index, 'jpeg') })));
    finalImage = await picture(192, 128, STEPS, 'png');
  });

  it('has one frame per step at the image’s size, the last one the final image, and loops', async () => {
    const animation = (await encodeStepsAnimation(frames, finalImage, STEPS, { maxBytes: 10 * 1024 * 1024 }))!;
    expect(animation.steps).toEqual(Array.from({ length: STEPS }, (_, index) => index + 1));
    const metadata = await sharp(animation.data, { animated: true }).metadata();
    expect(metadata.format).toBe(animation.format === 'gif' ? 'gif' : 'webp');
    expect([metadata.pages, metadata.width, metadata.pageHeight, metadata.loop]).toEqual([STEPS, 192, 128, 0]);
    expect([animation.width, animation.height]).toEqual([192, 128]);
    // Within what the lossy encoder changes: the last frame is the final image, an early frame is not.
    const final = await rgb(finalImage);
    expect(meanDifference(await rgb(animation.data, STEPS - 1), final)).toBeLessThan(4);
    expect(meanDifference(await rgb(animation.data, 0), final)).toBeGreaterThan(10);
  });

  it('keeps every second, third, … step when the file would be too large, then makes the frames smaller', async () => {
    const full = (await encodeStepsAnimation(frames, finalImage, STEPS, { maxBytes: 10 * 1024 * 1024 }))!;
    const sampled = (await encodeStepsAnimation(frames, finalImage, STEPS, { maxBytes: Math.floor(full.data.length * 0.7) }))!;
    expect(sampled.data.length).toBeLessThanOrEqual(full.data.length * 0.7);
    expect(sampled.steps[0]).toBe(1);
    expect(sampled.steps.at(-1)).toBe(STEPS);
    expect(sampled.steps.length).toBeLessThan(STEPS);
    expect((await sharp(sampled.data, { animated: true }).metadata()).pages).toBe(sampled.steps.length);

    const smaller = (await encodeStepsAnimation(frames, finalImage, STEPS, { maxBytes: Math.floor(full.data.length / 3) }))!;
    expect(smaller.data.length).toBeLessThanOrEqual(full.data.length / 3);
    expect(smaller.width).toBeLessThan(192);
    expect(smaller.steps.at(-1)).toBe(STEPS);
    expect(await encodeStepsAnimation(frames, finalImage, STEPS, { maxBytes: 100 })).toBeUndefined();
  });

  it('makes a strip of the first, middle and last frames', async () => {
    const { strip } = (await encodeStepsAnimation(frames, finalImage, STEPS, { maxBytes: 10 * 1024 * 1024 }))!;
    const metadata = await sharp(strip).metadata();
    expect([metadata.format, metadata.width, metadata.height]).toEqual(['jpeg', 3 * 192, 128]);
    const right = await sharp(strip).extract({ left: 2 * 192, top: 0, width: 192, height: 128 }).raw().toBuffer();
    expect(meanDifference(right, await rgb(finalImage))).toBeLessThan(4);
  });
});
