import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PermissionFlagsBits } from 'discord.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_MEMBER_PERMISSIONS } from './fake-discord/world.ts';
import type { OptionValue, StoredMessage } from './fake-discord/index.ts';
import { startHarness, useRedisServer, useSharedTinyPipeline, type Harness } from './bot-harness.ts';
import { writeDecidedSafetyChecker } from './safety-checker-model.ts';

/*
 * The servers' safety policy on the images a real safety checker (a tiny one, in the pipeline thread) flags: one
 * pipeline's checker flags every image, the other's none.
 */

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'bot-safety-test-'));
  await writeDecidedSafetyChecker(join(root, 'flags-every-image'), 'every image');
  await writeDecidedSafetyChecker(join(root, 'flags-no-image'), 'no image');
});
afterAll(async () => rm(root, { recursive: true, force: true }));

const flagging = useSharedTinyPipeline({ threadOptions: async () => ({ safetyChecker: join(root, 'flags-every-image') }) });
const clean = useSharedTinyPipeline({ threadOptions: async () => ({ safetyChecker: join(root, 'flags-no-image') }) });

/** The environment of a bot whose pipeline runs this checker (SAFETY_CHECKER, as npm start is given it). */
const checked = (checker: string) => ({ SAFETY_CHECKER: join(root, checker), PREVIEW_EVERY_STEPS: '1', PREVIEW_BUDGET_PERCENT: '1000' });

const MODERATOR = DEFAULT_MEMBER_PERMISSIONS | PermissionFlagsBits.ManageGuild;
const SPOILERED = '⚠️ The safety checker flagged this image, so it is behind a spoiler.';
const REFUSED = '🚫 The safety checker flagged the image, and this server does not post flagged images. Try another prompt or seed.';

async function set(harness: Harness, setting: string, value: string): Promise<void> {
  const handle = harness.fake.sendCommand({ name: 'settings', options: { setting, value }, user: harness.fake.user('mod'), memberPermissions: MODERATOR });
  expect(await harness.refusal(handle)).toMatch(/^✅/);
}

async function imagineIn(harness: Harness, where: 'normal channel' | 'age-restricted channel', options: Record<string, OptionValue> = {}): Promise<StoredMessage> {
  const channelId = where === 'normal channel' ? harness.fake.channelId : harness.fake.ageRestrictedChannelId;
  const handle = harness.fake.sendCommand({ name: 'imagine', options: { prompt: 'a red fox', seed: 7, ...options }, user: harness.fake.user('alice'), channelId });
  return harness.finalReply(handle);
}

/** Long enough for previews to be edited into the reply. */
const SLOW = { size: '512x512', steps: 10 } as const;
const fileNames = (reply: StoredMessage) => reply.attachments.map((attachment) => attachment.filename);
/** Whether any edit of the reply showed a preview of the image forming (drawn before the checker has seen it). */
const showedPreview = (reply: StoredMessage) => reply.revisions.some((revision) => revision.attachments.some((attachment) => attachment.filename === 'preview.jpg'));

describe('flagged images, by the server’s policy', () => {
  it('by default: behind a spoiler in a normal channel, as they are in an age-restricted one', async () => {
    const harness = await startHarness(flagging, checked('flags-every-image'), { ageRestrictedChannel: true });
    const normal = await imagineIn(harness, 'normal channel', SLOW);
    expect(fileNames(normal)).toEqual(['SPOILER_imagine-7-1.png']);
    expect(normal.content).toContain(SPOILERED);
    expect(showedPreview(normal)).toBe(false);
    const restricted = await imagineIn(harness, 'age-restricted channel');
    expect(fileNames(restricted)).toEqual(['imagine-7-1.png']);
    expect(restricted.content).not.toContain('safety checker');
  });

  it('behind a spoiler, a flagged image’s steps animation is too, and the embed does not show its strip', async () => {
    const harness = await startHarness(flagging, checked('flags-every-image'), { ageRestrictedChannel: true });
    const reply = await imagineIn(harness, 'normal channel', { steps: 4, steps_video: true });
    expect(fileNames(reply)).toEqual(['SPOILER_imagine-7-1.png', expect.stringMatching(/^SPOILER_imagine-7-1-steps\.(webp|gif)$/), 'SPOILER_imagine-7-steps.jpg']);
    expect(reply.embeds[0].image).toBeUndefined();
  });

  it('refuse: no image, and the requester is told why; age-restricted channels follow their own setting', async () => {
    const harness = await startHarness(flagging, checked('flags-every-image'), { ageRestrictedChannel: true });
    await set(harness, 'safety', 'refuse');
    const refused = await imagineIn(harness, 'normal channel');
    expect(refused.attachments).toEqual([]);
    expect(refused.content).toContain(REFUSED);
    expect(fileNames(await imagineIn(harness, 'age-restricted channel'))).toEqual(['imagine-7-1.png']);

    await set(harness, 'safety_nsfw_channels', 'spoiler');
    expect(fileNames(await imagineIn(harness, 'age-restricted channel'))).toEqual(['SPOILER_imagine-7-1.png']);
    await set(harness, 'safety_nsfw_channels', 'refuse');
    const refusedThere = await imagineIn(harness, 'age-restricted channel', { count: 2 });
    expect(refusedThere.attachments).toEqual([]);
    expect(refusedThere.content).toContain('🚫 The safety checker flagged all 2 images');
  });

  it('off: flagged images are posted as they are, without a word', async () => {
    const harness = await startHarness(flagging, checked('flags-every-image'), { ageRestrictedChannel: true });
    await set(harness, 'safety', 'off');
    const reply = await imagineIn(harness, 'normal channel', { ...SLOW, count: 2 });
    expect(fileNames(reply)).toEqual(['imagine-7-1.png', 'imagine-7-2.png']);
    expect(reply.content).not.toContain('safety checker');
    expect(showedPreview(reply)).toBe(true);
  });

  it('images the checker does not flag are posted as they are under every policy', async () => {
    const harness = await startHarness(clean, checked('flags-no-image'), { ageRestrictedChannel: true });
    await set(harness, 'safety', 'refuse');
    await set(harness, 'safety_nsfw_channels', 'refuse');
    for (const where of ['normal channel', 'age-restricted channel'] as const) {
      const reply = await imagineIn(harness, where);
      expect(fileNames(reply)).toEqual(['imagine-7-1.png']);
      expect(reply.content).not.toContain('safety checker');
    }
  });
});

describe('over Redis (QUEUE_BACKEND=bullmq): the verdict travels from the worker with the image', () => {
  const redisUrl = useRedisServer();

  it('spoiler and refuse', async () => {
    const harness = await startHarness(flagging, { ...checked('flags-every-image'), QUEUE_BACKEND: 'bullmq', REDIS_URL: redisUrl() }, { ageRestrictedChannel: true });
    expect(fileNames(await imagineIn(harness, 'normal channel'))).toEqual(['SPOILER_imagine-7-1.png']);
    await set(harness, 'safety', 'refuse');
    expect((await imagineIn(harness, 'normal channel')).content).toContain(REFUSED);
  });
});
