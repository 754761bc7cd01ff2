import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { embedField, startHarness, useSharedTinyPipeline } from './bot-harness.ts';
import type { StoredAttachment, StoredMessage } from './fake-discord/index.ts';
import { pixelDifference } from './fixtures.ts';
import { RedisServer } from './redis-server.ts';

const generator = useSharedTinyPipeline();
const TWO_IMAGES = { prompt: 'a red fox', seed: 5, steps: 4, scheduler: 'Euler', size: '128x64', count: 2 } as const;

async function rgb(image: Buffer | Uint8Array, page = 0): Promise<Buffer> {
  return sharp(image, { page }).removeAlpha().raw().toBuffer();
}

/**
 * The animation has `steps` frames at the image's size and ends on the image: within what the animation's encoder
 * loses on the image alone (a still of the same format and quality), while the frames before it (step previews) differ.
 */
async function expectAnimationOf(animation: StoredAttachment, image: StoredAttachment, steps: number): Promise<void> {
  const metadata = await sharp(animation.data, { animated: true }).metadata();
  const imageSize = await sharp(image.data).metadata();
  expect(metadata.format).toBe(animation.filename.endsWith('.gif') ? 'gif' : 'webp');
  expect([metadata.pages, metadata.width, metadata.pageHeight]).toEqual([steps, imageSize.width, imageSize.height]);
  const final = await rgb(image.data);
  const still = metadata.format === 'gif' ? sharp(image.data).gif({ effort: 1 }) : sharp(image.data).webp({ quality: 80, effort: 1 });
  const encoderLoss = pixelDifference(await rgb(await still.toBuffer()), final).mean;
  expect(pixelDifference(await rgb(animation.data, steps - 1), final).mean).toBeLessThanOrEqual(encoderLoss * 1.25 + 0.5);
  for (let page = 0; page < steps - 1; page++) expect(pixelDifference(await rgb(animation.data, page), final).mean).toBeGreaterThan(encoderLoss * 2);
}

/** A job of two images with steps_video: each image has its own animation, and the embed one strip with a row for each. */
async function expectAnimationPerImage(reply: StoredMessage): Promise<void> {
  const names = reply.attachments.map((attachment) => attachment.filename);
  expect(names).toEqual(['imagine-5-1.png', 'imagine-5-2.png', expect.stringMatching(/^imagine-5-1-steps\.(webp|gif)$/), expect.stringMatching(/^imagine-5-2-steps\.(webp|gif)$/), 'imagine-5-steps.jpg']);
  const [first, second, firstAnimation, secondAnimation, strip] = reply.attachments;
  await expectAnimationOf(firstAnimation, first, 4);
  await expectAnimationOf(secondAnimation, second, 4);
  // Each ends on its own image, not on the other one.
  expect(pixelDifference(await rgb(firstAnimation.data, 3), await rgb(second.data)).mean).toBeGreaterThan(pixelDifference(await rgb(firstAnimation.data, 3), await rgb(first.data)).mean + 5);
  expect(reply.embeds[0].image?.url).toBe('attachment://imagine-5-steps.jpg');
  expect(await sharp(strip.data).metadata()).toMatchObject({ format: 'jpeg', width: 3 * 128, height: 2 * 64 });
}

describe('/imagine steps_video:true', () => {
  it('posts the denoising as a second attachment, one frame per step ending on the image, and its strip in the embed', async () => {
    const harness = await startHarness(generator);
    // Euler runs exactly `steps` steps (PNDM runs one more).
    const reply = await harness.finalReply(harness.imagine('alice', { prompt: 'a red fox', seed: 5, steps: 6, scheduler: 'Euler', size: '128x64', steps_video: true }));
    const [image, animation, strip] = reply.attachments;
    expect(reply.attachments).toHaveLength(3);
    expect(image.filename).toBe('imagine-5-1.png');
    expect(animation.filename).toMatch(/^imagine-5-1-steps\.(webp|gif)$/);
    expect(strip.filename).toBe('imagine-5-steps.jpg');
    expect(reply.embeds[0].image?.url).toBe('attachment://imagine-5-steps.jpg');
    expect(embedField(reply, 'Steps')).toBe('6');
    await expectAnimationOf(animation, image, 6);
    expect(await sharp(strip.data).metadata()).toMatchObject({ format: 'jpeg', width: 3 * 128, height: 64 });
  });

  it('gives each image of a job its own animation, and the embed one strip with a row per image', async () => {
    const harness = await startHarness(generator);
    await expectAnimationPerImage(await harness.finalReply(harness.imagine('alice', { ...TWO_IMAGES, steps_video: true })));
  });

  it('adds nothing when not asked for', async () => {
    const harness = await startHarness(generator);
    const reply = await harness.finalReply(harness.imagine('alice', { prompt: 'a red fox', seed: 5, steps: 3 }));
    expect(reply.attachments.map((attachment) => attachment.filename)).toEqual(['imagine-5-1.png']);
    expect(reply.embeds[0].image).toBeUndefined();
  });
});

describe('over Redis (QUEUE_BACKEND=bullmq)', () => {
  let redis: RedisServer | undefined;
  beforeAll(async () => {
    redis = await RedisServer.start();
  });
  afterAll(async () => redis?.dispose());

  it('the animations travel from the worker with the result, one per image', async () => {
    const harness = await startHarness(generator, { QUEUE_BACKEND: 'bullmq', REDIS_URL: redis!.url });
    await expectAnimationPerImage(await harness.finalReply(harness.imagine('alice', { ...TWO_IMAGES, steps_video: true })));
  });
});
