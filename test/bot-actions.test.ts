import { ComponentType, InteractionResponseType } from 'discord.js';
import { writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseParameters } from '../src/image/parameters.ts';
import { readPngParameters } from '../src/image/png.ts';
import { ensureTinyModel } from '../src/tiny-model/index.ts';
import { OnnxUpscaler, upscaleImage } from '../src/upscale/upscaler.ts';
import { PipelineThread } from '../src/worker/pipeline-thread.ts';
import { BLOCKER_OPTIONS, customIds, embedField, startHarness, useRedisServer, useSharedTinyPipeline, type Harness } from './bot-harness.ts';
import type { StoredMessage } from './fake-discord/index.ts';
import { upscalerGraph } from './upscaler-graph.ts';
import { Redis } from 'ioredis';

const pipeline = useSharedTinyPipeline();
const SMALL = { prompt: 'a lighthouse', seed: 11, steps: 4, size: '64x64' } as const;

async function press(h: Harness, username: string, message: StoredMessage, customId: string): Promise<StoredMessage> {
  return h.finalReply(h.fake.clickButton({ messageId: message.id, customId, user: h.fake.user(username) }));
}

async function ephemeralAnswer(h: Harness, username: string, message: StoredMessage, customId: string): Promise<string> {
  const handle = h.fake.clickButton({ messageId: message.id, customId, user: h.fake.user(username) });
  const callback = await h.fake.waitFor(() => h.fake.interaction(handle).callback, 10_000, 'answer');
  return (callback.data as { content: string }).content;
}

function parametersOf(message: StoredMessage) {
  return parseParameters(readPngParameters(message.attachments[0].data) ?? '');
}

async function sizeOf(message: StoredMessage): Promise<string> {
  const { width, height } = await sharp(message.attachments[0].data).metadata();
  return `${width}x${height}`;
}

const png = (width: number, height: number) => sharp({ create: { width, height, channels: 3, background: '#2a6' } }).png().toBuffer();

async function attachedPicture(width: number, height: number) {
  return { filename: 'field.png', data: await png(width, height), contentType: 'image/png', width, height };
}

async function pixelsOf(message: StoredMessage): Promise<Buffer> {
  return sharp(message.attachments[0].data).removeAlpha().raw().toBuffer();
}

/**
 * A result whose Vary runs for a while (as BLOCKER_OPTIONS' first image does): drawn from a 512x512 picture at 150 steps
 * with the least strength (7 steps), so Vary (Strong) of it redraws 512x512 in 105 steps.
 */
async function slowToVary(harness: Harness): Promise<StoredMessage> {
  const picture = await attachedPicture(512, 512);
  return harness.finalReply(harness.imagine('alice', { prompt: 'a lighthouse', seed: 5, steps: 150, size: '512x512', image: picture, strength: 0.05 }));
}

describe('actions on a result’s pictures', () => {
  it('offers Vary, Upscale and Remix rows; Vary redraws the picture with a new seed for whoever pressed, linking its source', async () => {
    const harness = await startHarness(pipeline);
    const original = await harness.finalReply(harness.imagine('alice', SMALL));
    expect(customIds(original)).toEqual([
      'imagine:reroll',
      'imagine:remix',
      `imagine:delete:${harness.fake.user('alice').id}`,
      'imagine:vary:subtle:0',
      'imagine:vary:strong:0',
      'imagine:upscale:2:0',
      'imagine:upscale:4:0',
      'imagine:upscale:2c:0',
    ]);

    for (const [amount, strength] of [['subtle', 0.35], ['strong', 0.7]] as const) {
      const varied = await press(harness, 'bob', original, `imagine:vary:${amount}:0`);
      expect(varied.id).not.toBe(original.id);
      expect(embedField(varied, 'Strength')).toBe(String(strength));
      expect(embedField(varied, 'Source')).toBe(`[picture](${original.attachments[0].url})`);
      expect(embedField(varied, 'Size')).toBe('64x64');
      expect(embedField(varied, 'Seed')).not.toBe('11');
      expect(varied.embeds[0].description).toBe('a lighthouse');
      expect(parametersOf(varied).strength).toBe(strength);
      expect(customIds(varied)).toContain(`imagine:delete:${harness.fake.user('bob').id}`);
      expect(Buffer.compare(varied.attachments[0].data, original.attachments[0].data)).not.toBe(0);
    }
  });

  it('Upscale ×2 and ×4 enlarge the picture with its own settings, saying Lanczos made them when no upscaler is installed', async () => {
    const harness = await startHarness(pipeline);
    const original = await harness.finalReply(harness.imagine('alice', { ...SMALL, count: 2 }));
    expect(customIds(original)).toContain('imagine:upscale:2c:1');
    expect(customIds(original)).not.toContain('imagine:upscale:4:0');

    const upscaled = await press(harness, 'bob', original, 'imagine:upscale:2:1');
    expect(await sizeOf(upscaled)).toBe('128x128');
    expect(embedField(upscaled, 'Upscale')).toBe('×2, Lanczos (no upscaler model is installed)');
    expect(embedField(upscaled, 'Seed')).toBe('12');
    expect(parametersOf(upscaled)).toMatchObject({ seed: '12', width: 128, height: 128, upscale: { factor: 2, upscaler: 'Lanczos', creative: false } });
    // An upscale is not varied or upscaled again.
    expect(customIds(upscaled)).toEqual([`imagine:delete:${harness.fake.user('bob').id}`]);

    const single = await harness.finalReply(harness.imagine('alice', SMALL));
    expect(await sizeOf(await press(harness, 'carol', single, 'imagine:upscale:4:0'))).toBe('256x256');
  });

  it('an upscale over the channel’s upload limit as PNG is posted as lossless WebP', async () => {
    const harness = await startHarness(pipeline);
    const original = await harness.finalReply(harness.imagine('alice', SMALL));
    const png = await press(harness, 'bob', original, 'imagine:upscale:4:0');
    const webpBytes = (await sharp(png.attachments[0].data).webp({ lossless: true, effort: 6 }).toBuffer()).length;
    expect(webpBytes).toBeLessThan(png.attachments[0].size);
    const limit = Math.floor((webpBytes + png.attachments[0].size) / 2);
    const handle = harness.fake.clickButton({ messageId: original.id, customId: 'imagine:upscale:4:0', user: harness.fake.user('bob'), attachmentSizeLimit: limit });
    const webp = await harness.finalReply(handle);
    expect(webp.attachments[0].filename).toMatch(/\.webp$/);
    expect(webp.attachments[0].size).toBeLessThanOrEqual(limit);
    expect(await pixelsOf(webp)).toEqual(await pixelsOf(png));
  });

  it('Upscale (Creative) redraws the larger picture at a low strength, as a hires fix', async () => {
    const harness = await startHarness(pipeline);
    const original = await harness.finalReply(harness.imagine('alice', SMALL));
    const creative = await press(harness, 'alice', original, 'imagine:upscale:2c:0');
    expect(await sizeOf(creative)).toBe('128x128');
    expect(parametersOf(creative)).toMatchObject({ seed: '11', strength: 0.35, upscale: { factor: 2, upscaler: 'Lanczos', creative: true } });
    expect(embedField(creative, 'Upscale')).toBe('×2, Lanczos (no upscaler model is installed), redrawn (Creative)');
  });

  it('Remix opens a modal with the prompts filled in and runs the job again with the same seed and the edited text', async () => {
    const harness = await startHarness(pipeline);
    const original = await harness.finalReply(harness.imagine('alice', { ...SMALL, negative_prompt: 'fog' }));
    const opened = harness.fake.clickButton({ messageId: original.id, customId: 'imagine:remix', user: harness.fake.user('bob') });
    const modal = await harness.fake.waitFor(() => harness.fake.interaction(opened).callback, 5_000, 'modal');
    expect(modal.type).toBe(InteractionResponseType.Modal);
    const inputs = JSON.stringify(modal.data);
    expect(inputs).toContain('"value":"a lighthouse"');
    expect(inputs).toContain('"value":"fog"');
    expect(inputs).toContain(`"type":${ComponentType.TextInput}`);

    const submitted = harness.fake.submitModal({ from: opened, values: { prompt: 'a lighthouse at night', negative_prompt: 'fog, rain' } });
    const remixed = await harness.finalReply(submitted);
    expect(remixed.embeds[0].description).toBe('a lighthouse at night');
    expect(embedField(remixed, 'Negative prompt')).toBe('fog, rain');
    expect(embedField(remixed, 'Seed')).toBe('11');
    expect(embedField(remixed, 'Steps')).toBe('4');
  });

  it('every action works after a restart, rebuilt from the message; Reroll of a varied picture fetches its source again', async () => {
    const harness = await startHarness(pipeline);
    const original = await harness.finalReply(harness.imagine('alice', SMALL));
    const varied = await press(harness, 'bob', original, 'imagine:vary:subtle:0');
    await harness.restart();
    expect(await sizeOf(await press(harness, 'bob', original, 'imagine:upscale:2:0'))).toBe('128x128');
    expect(parametersOf(await press(harness, 'bob', original, 'imagine:upscale:2c:0'))).toMatchObject({ width: 128, upscale: { creative: true } });
    expect(parametersOf(await press(harness, 'bob', original, 'imagine:vary:strong:0')).strength).toBe(0.7);
    const opened = harness.fake.clickButton({ messageId: original.id, customId: 'imagine:remix', user: harness.fake.user('dave') });
    await harness.fake.waitFor(() => harness.fake.interaction(opened).callback, 5_000, 'modal');
    const remixed = await harness.finalReply(harness.fake.submitModal({ from: opened, values: { prompt: 'a lighthouse in fog', negative_prompt: '' } }));
    expect(parametersOf(remixed)).toMatchObject({ prompt: 'a lighthouse in fog', seed: '11' });
    const rerolled = await press(harness, 'carol', varied, 'imagine:reroll');
    expect(embedField(rerolled, 'Source')).toBe(embedField(varied, 'Source'));
    expect(parametersOf(rerolled).strength).toBe(0.35);
    expect(embedField(rerolled, 'Seed')).not.toBe(embedField(varied, 'Seed'));
  });

  it('refuses clearly when the source picture is gone', async () => {
    const harness = await startHarness(pipeline);
    const original = await harness.finalReply(harness.imagine('alice', SMALL));
    const varied = await press(harness, 'bob', original, 'imagine:vary:strong:0');
    await harness.fake.deleteMessage(original.id);
    expect(await ephemeralAnswer(harness, 'bob', varied, 'imagine:reroll')).toBe(
      '⚠️ I cannot reroll this: the picture it started from is unavailable. The picture is gone: it was deleted, or its link expired.',
    );
  });
});

describe('with an upscaler model installed', () => {
  let root: string | undefined;
  let thread: PipelineThread | undefined;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'bot-upscaler-'));
    writeFileSync(join(root, 'tiny-x2.onnx'), upscalerGraph());
    thread = PipelineThread.start({ modelDir: await ensureTinyModel(), upscaler: { name: 'tiny-x2', file: join(root, 'tiny-x2.onnx') } });
    await thread.ready;
  });
  afterAll(async () => {
    await thread?.dispose();
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('Upscale runs it in the pipeline’s thread and names it; ×4 from a ×2 model is two passes of it', async () => {
    const harness = await startHarness(thread!);
    const original = await harness.finalReply(harness.imagine('alice', SMALL));
    const twice = await press(harness, 'bob', original, 'imagine:upscale:2:0');
    expect(embedField(twice, 'Upscale')).toBe('×2, tiny-x2');
    expect(parametersOf(twice).upscale).toEqual({ factor: 2, upscaler: 'tiny-x2', creative: false });
    const model = await OnnxUpscaler.load(join(root!, 'tiny-x2.onnx'), 'tiny-x2', { executionProvider: 'cpu', clock: { runMs: 0 }, fuseAttention: false });
    try {
      const source = { pixels: new Uint8Array(await pixelsOf(original)), width: 64, height: 64 };
      const { image } = await upscaleImage(source, 2, model);
      expect(await pixelsOf(twice)).toEqual(Buffer.from(image.pixels));
    } finally {
      await model.release();
    }
    const fourTimes = await press(harness, 'bob', original, 'imagine:upscale:4:0');
    expect(await sizeOf(fourTimes)).toBe('256x256');
    expect(embedField(fourTimes, 'Upscale')).toBe('×4, tiny-x2');
  });
});

describe('actions are jobs like any other', () => {
  it('count against the presser’s limits, and the presser cancels a running one while the queue goes on', async () => {
    const harness = await startHarness(pipeline, { MAX_JOBS_PER_USER: '1' });
    const original = await slowToVary(harness);
    const blocker = harness.imagine('bob', BLOCKER_OPTIONS);
    await harness.waitUntilRunning(blocker);
    for (const action of ['imagine:vary:subtle:0', 'imagine:upscale:2:0']) {
      expect(await ephemeralAnswer(harness, 'bob', original, action)).toBe('🚦 You already have 1 job in the queue. Wait for one to finish, then try again.');
    }
    await harness.cancel(blocker);
    await harness.finalReply(blocker);

    const varying = harness.fake.clickButton({ messageId: original.id, customId: 'imagine:vary:strong:0', user: harness.fake.user('bob') });
    await harness.waitUntilRunning(varying);
    const next = harness.imagine('carol', SMALL);
    await harness.cancel(varying);
    const cancelled = await harness.finalReply(varying);
    expect(cancelled.content).toBe('> a lighthouse\n🛑 Cancelled.');
    expect(cancelled.attachments).toEqual([]);
    expect((await harness.finalReply(next)).attachments).toHaveLength(1);
  });
});

describe('over Redis (QUEUE_BACKEND=bullmq): the picture travels with its job to the worker', () => {
  const redisUrl = useRedisServer();

  it('image:, Vary, Upscale (Creative) and Remix give what the local queue gives, also after a restart; Cancel stops a running Vary', async () => {
    const local = await startHarness(pipeline);
    const harness = await startHarness(pipeline, { QUEUE_BACKEND: 'bullmq', REDIS_URL: redisUrl() });
    const started = { ...SMALL, image: await attachedPicture(64, 64), strength: 0.5 };
    const [original, localOriginal] = await Promise.all([harness.finalReply(harness.imagine('alice', started)), local.finalReply(local.imagine('alice', started))]);
    expect(parametersOf(original)).toMatchObject({ strength: 0.5, seed: '11' });
    expect(await pixelsOf(original)).toEqual(await pixelsOf(localOriginal));

    const varied = await press(harness, 'bob', original, 'imagine:vary:subtle:0');
    expect(embedField(varied, 'Source')).toBe(`[picture](${original.attachments[0].url})`);
    expect(parametersOf(varied).strength).toBe(0.35);
    const creative = await press(harness, 'bob', original, 'imagine:upscale:2c:0');
    expect(await sizeOf(creative)).toBe('128x128');
    expect(await pixelsOf(creative)).toEqual(await pixelsOf(await press(local, 'bob', localOriginal, 'imagine:upscale:2c:0')));

    await harness.restart();
    expect(await sizeOf(await press(harness, 'carol', original, 'imagine:upscale:4:0'))).toBe('256x256');
    const opened = harness.fake.clickButton({ messageId: original.id, customId: 'imagine:remix', user: harness.fake.user('carol') });
    await harness.fake.waitFor(() => harness.fake.interaction(opened).callback, 5_000, 'modal');
    const remixed = await harness.finalReply(harness.fake.submitModal({ from: opened, values: { prompt: 'a lighthouse at dusk', negative_prompt: '' } }));
    expect(remixed.embeds[0].description).toBe('a lighthouse at dusk');
    expect(parametersOf(remixed)).toMatchObject({ seed: '11', strength: 0.5 });

    const slow = await slowToVary(harness);
    const varying = harness.fake.clickButton({ messageId: slow.id, customId: 'imagine:vary:strong:0', user: harness.fake.user('bob') });
    await harness.waitUntilRunning(varying);
    // The job in Redis holds its picture once (its options), not once more in its settled request.
    const client = new Redis(redisUrl());
    const jobData = await Promise.all((await client.keys('imagine:jobs:job-*')).filter((key) => !key.slice('imagine:jobs:'.length).includes(':')).map((key) => client.hget(key, 'data')));
    await client.quit();
    const picture = slow.attachments[0].data.toString('base64');
    expect(jobData.filter((data) => data?.includes(picture)).map((data) => data!.split(picture).length - 1)).toEqual([1]);
    await harness.cancel(varying);
    expect((await harness.finalReply(varying)).content).toBe('> a lighthouse\n🛑 Cancelled.');
  });
});

describe('/imagine image: a picture to start from', () => {
  it('redraws the attached picture at the strength given, and the result links it', async () => {
    const harness = await startHarness(pipeline);
    const data = await png(64, 64);
    const handle = harness.imagine('alice', { ...SMALL, image: { filename: 'field.png', data, contentType: 'image/png', width: 64, height: 64 }, strength: 0.5 });
    const reply = await harness.finalReply(handle);
    const source = embedField(reply, 'Source');
    expect(source).toMatch(/^\[picture\]\(http:\/\/127\.0\.0\.1:\d+\/attachments\/\d+\/\d+\/field\.png\)$/);
    expect(embedField(reply, 'Strength')).toBe('0.5');
    expect(parametersOf(reply)).toMatchObject({ strength: 0.5, seed: '11', width: 64, height: 64 });
    expect(customIds(reply)).toContain('imagine:vary:subtle:0');
  });

  it('refuses, only to the sender, what is not a picture, too large, too many pixels, and a strength without a picture', async () => {
    const harness = await startHarness(pipeline);
    const refusal = (options: Record<string, unknown>) => harness.refusal(harness.imagine('bob', { prompt: 'a cat', ...options } as never));
    expect(await refusal({ image: { filename: 'notes.txt', data: Buffer.from('hello'), contentType: 'text/plain' } })).toBe('⚠️ "notes.txt" is not a PNG, JPEG or WebP picture.');
    expect(await refusal({ image: { filename: 'huge.png', data: Buffer.alloc(26 * 1024 * 1024), contentType: 'image/png', width: 100, height: 100 } })).toBe(
      '⚠️ "huge.png" is 26.0 MB; pictures up to 25 MB are taken.',
    );
    expect(await refusal({ image: { filename: 'wide.png', data: await png(8, 8), contentType: 'image/png', width: 10_000, height: 9_000 } })).toBe(
      '⚠️ "wide.png" is 10000x9000; pictures up to 25 megapixels are taken.',
    );
    expect(await refusal({ image: { filename: 'fake.png', data: Buffer.from('not really a png'), contentType: 'image/png', width: 8, height: 8 } })).toBe(
      '⚠️ That file is not a picture (PNG, JPEG or WebP).',
    );
    expect(await refusal({ strength: 0.4 })).toBe('⚠️ strength is how much of a picture to redraw: give an image with it.');
  });
});
