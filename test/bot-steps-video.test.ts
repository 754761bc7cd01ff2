import sharp from 'sharp';
import { afterEach, describe, expect, it } from 'vitest';
import { embedField, startHarness, startRedisBackend, useSharedTinyPipeline, type RedisBackend } from './bot-harness.ts';
import { pixelDifference } from './fixtures.ts';

const generator = useSharedTinyPipeline();

async function rgb(image: Buffer | Uint8Array, page = 0): Promise<Buffer> {
  return sharp(image, { page }).removeAlpha().raw().toBuffer();
}

describe('/imagine steps_video:true', () => {
  it('posts the denoising as a second attachment, one frame per step ending on the image, and its strip in the embed', async () => {
    const harness = await startHarness(generator);
    // Euler runs exactly `steps` steps (PNDM runs one more).
    const reply = await harness.finalReply(harness.imagine('alice', { prompt: 'a red fox', seed: 5, steps: 6, scheduler: 'Euler', size: '128x64', steps_video: true }));
    const [image, animation, strip] = reply.attachments;
    expect(reply.attachments).toHaveLength(3);
    expect(image.filename).toBe('imagine-5-1.png');
    expect(animation.filename).toMatch(/^imagine-5-steps\.(webp|gif)$/);
    expect(strip.filename).toBe('imagine-5-steps.jpg');
    expect(reply.embeds[0].image?.url).toBe('attachment://imagine-5-steps.jpg');
    expect(embedField(reply, 'Steps')).toBe('6');

    const metadata = await sharp(animation.data, { animated: true }).metadata();
    expect(metadata.format).toBe(animation.filename.endsWith('.gif') ? 'gif' : 'webp');
    expect([metadata.pages, metadata.width, metadata.pageHeight]).toEqual([6, 128, 64]);
    const final = await rgb(image.data);
    // What the animation's encoder loses on the image alone, as a still of the same format and quality.
    const still = metadata.format === 'gif' ? sharp(image.data).gif({ effort: 1 }) : sharp(image.data).webp({ quality: 80, effort: 1 });
    const encoderLoss = pixelDifference(await rgb(await still.toBuffer()), final).mean;
    // Within that loss the last frame is the image; the frames before it (step previews) are not.
    expect(pixelDifference(await rgb(animation.data, 5), final).mean).toBeLessThanOrEqual(encoderLoss * 1.25 + 0.5);
    for (let page = 0; page < 5; page++) expect(pixelDifference(await rgb(animation.data, page), final).mean).toBeGreaterThan(encoderLoss * 2);
    expect(await sharp(strip.data).metadata()).toMatchObject({ format: 'jpeg', width: 3 * 128, height: 64 });
  });

  it('adds nothing when not asked for', async () => {
    const harness = await startHarness(generator);
    const reply = await harness.finalReply(harness.imagine('alice', { prompt: 'a red fox', seed: 5, steps: 3 }));
    expect(reply.attachments.map((attachment) => attachment.filename)).toEqual(['imagine-5-1.png']);
    expect(reply.embeds[0].image).toBeUndefined();
  });
});

describe('over Redis (QUEUE_BACKEND=bullmq)', () => {
  let backend: RedisBackend | undefined;
  afterEach(async () => backend?.close());

  it('the animation travels from the worker with the result', async () => {
    backend = await startRedisBackend(generator);
    const { queue } = backend;
    const job = await queue.enqueue('alice', { prompt: 'a red fox', seed: '5', steps: 6, scheduler: 'Euler', count: 1, stepsVideo: true });
    const [image] = (await job.result).images;
    const animation = image.animation!;
    expect(animation.steps).toEqual([1, 2, 3, 4, 5, 6]);
    expect((await sharp(animation.data, { animated: true }).metadata()).pages).toBe(6);
    expect((await sharp(animation.strip).metadata()).format).toBe('jpeg');
  });
});
