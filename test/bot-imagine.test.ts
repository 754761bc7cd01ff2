import { InteractionResponseType } from 'discord.js';
import { describe, expect, it } from 'vitest';
import { parseParameters } from '../src/image/parameters.ts';
import { readPngParameters } from '../src/image/png.ts';
import { customIds, embedField, limitForOneOfTwo, startHarness, useSharedTinyPipeline, type Harness } from './bot-harness.ts';

const pipeline = useSharedTinyPipeline();
let harness: Harness | undefined;

describe('/imagine end to end', () => {
  it('defers at once, then replaces the reply with the PNG, its parameters and an embed', async () => {
    harness = await startHarness(pipeline);
    const { fake } = harness;
    const handle = harness.imagine('alice', { prompt: 'a red fox in snow', negative_prompt: 'blurry', seed: 1234, steps: 3, guidance: 6.5, scheduler: 'Euler a' });
    const reply = await harness.finalReply(handle);

    const interaction = fake.interaction(handle);
    expect(interaction.callback?.type).toBe(InteractionResponseType.DeferredChannelMessageWithSource);
    expect(interaction.callbackLatencyMs).toBeLessThan(3000);

    expect(reply.attachments).toHaveLength(1);
    const [png] = reply.attachments;
    expect(png.filename).toBe('imagine-1234-1.png');
    const parameters = parseParameters(readPngParameters(png.data) ?? '');
    expect(parameters).toMatchObject({
      prompt: 'a red fox in snow',
      negativePrompt: 'blurry',
      seed: '1234',
      steps: 3,
      guidanceScale: 6.5,
      scheduler: 'Euler a',
      width: 64,
      height: 64,
    });
    expect(reply.embeds[0].description).toBe('a red fox in snow');
    expect(embedField(reply, 'Seed')).toBe('1234');
    expect(embedField(reply, 'Negative prompt')).toBe('blurry');
    expect(embedField(reply, 'Steps')).toBe('3');
    expect(embedField(reply, 'Guidance')).toBe('6.5');
    expect(embedField(reply, 'Scheduler')).toBe('Euler a');
    expect(embedField(reply, 'Size')).toBe('64x64');
    expect(embedField(reply, 'Model')).toBe(parameters.model);
    expect(embedField(reply, 'Time')).toMatch(/^\d+\.\d s$/);
    expect(customIds(reply).slice(0, 3)).toEqual(['imagine:reroll', 'imagine:remix', `imagine:delete:${fake.user('alice').id}`]);
  });

  it('shows step progress with edits throttled to the configured interval', async () => {
    harness = await startHarness(pipeline, { PROGRESS_EDIT_INTERVAL_MS: '150' });
    const handle = harness.imagine('alice', { prompt: 'progress', size: '256x256', steps: 150 });
    const reply = await harness.finalReply(handle);
    const statuses = reply.revisions.filter((revision) => revision.attachments.length === 0 && revision.content !== '');
    expect(statuses.some((revision) => /step \d+\/150/.test(revision.content))).toBe(true);
    for (let index = 1; index < statuses.length; index++) {
      expect(statuses[index].at.getTime() - statuses[index - 1].at.getTime()).toBeGreaterThanOrEqual(140);
    }
    expect(reply.revisions.at(-1)?.attachments).toHaveLength(1);
  });

  it('puts count images with consecutive seeds in one message', async () => {
    harness = await startHarness(pipeline);
    const reply = await harness.finalReply(harness.imagine('alice', { prompt: 'four', seed: 99, count: 4, size: '128x64' }));
    expect(reply.attachments.map((attachment) => attachment.filename)).toEqual([1, 2, 3, 4].map((index) => `imagine-99-${index}.png`));
    expect(reply.attachments.map((attachment) => parseParameters(readPngParameters(attachment.data) ?? '').seed)).toEqual(['99', '100', '101', '102']);
    expect(embedField(reply, 'Seed')).toBe('99, 100, 101, 102');
    expect(embedField(reply, 'Size')).toBe('128x64');
  });

  it('splits the images over several messages when they exceed the upload limit', async () => {
    harness = await startHarness(pipeline);
    const { fake } = harness;
    const limit = await limitForOneOfTwo(harness, 'alice', { prompt: 'split', seed: 5 });
    const handle = harness.imagine('alice', { prompt: 'split', seed: 5, count: 2 }, { attachmentSizeLimit: limit });
    const reply = await harness.finalReply(handle);
    const followups = await fake.waitFor(() => fake.followups(handle).length === 1 && fake.followups(handle), 10_000, 'second part');
    const parts = [reply, ...followups];
    expect(parts.map((part) => part.attachments.length)).toEqual([1, 1]);
    expect(parts.map((part) => part.content)).toEqual(['Images 1/2', 'Images 2/2']);
    for (const part of parts) {
      expect(part.attachments[0].size).toBeLessThanOrEqual(limit);
      expect(embedField(part, 'Seed')).toBe('5, 6');
    }
  });

  it('says so when an image cannot fit the upload limit even as WebP', async () => {
    harness = await startHarness(pipeline);
    const reply = await harness.finalReply(harness.imagine('alice', { prompt: 'too big', seed: 5 }, { attachmentSizeLimit: 2048 }));
    expect(reply.attachments).toEqual([]);
    expect(reply.content).toMatch(/imagine-5-1\.(png|webp) is \d+ KiB, over this channel’s upload limit \(2 KiB\), so it is not attached/);
    expect(embedField(reply, 'Seed')).toBe('5');
  });

  it('suggests the sizes the model accepts, native first', async () => {
    harness = await startHarness(pipeline);
    const { fake } = harness;
    const handle = fake.sendAutocomplete({ name: 'imagine', focused: 'size', options: { size: '' }, user: fake.user('alice') });
    const callback = await fake.waitFor(() => fake.interaction(handle).callback, 5_000, 'autocomplete');
    expect(callback.data).toEqual({
      choices: [
        { name: '256x256 (native)', value: '256x256' },
        { name: '64x64', value: '64x64' },
        { name: '128x64', value: '128x64' },
        { name: '512x512', value: '512x512' },
      ],
    });
    const typed = fake.sendAutocomplete({ name: 'imagine', focused: 'size', options: { size: '128' }, user: fake.user('alice') });
    expect((await fake.waitFor(() => fake.interaction(typed).callback, 5_000, 'autocomplete')).data).toEqual({
      choices: [{ name: '128x64', value: '128x64' }],
    });
  });

  it('refuses bad options with an ephemeral message naming the problem', async () => {
    harness = await startHarness(pipeline, { MAX_STEPS: '10', MAX_GUIDANCE: '12' });
    const cases: [Record<string, string | number>, RegExp][] = [
      [{ prompt: 'x', size: '100x100' }, /100x100 is not a size .* offers; choose one of 256x256, 64x64, 128x64, 512x512/],
      [{ prompt: 'x', size: 'huge' }, /size "huge" is not WIDTHxHEIGHT/],
      [{ prompt: 'x', steps: 11 }, /steps must be between 1 and 10/],
      [{ prompt: 'x', guidance: 13 }, /guidance must be between 0 and 12/],
      [{ prompt: '   ' }, /The prompt is empty/],
      [{ prompt: 'x', decoder: 'tiny' }, /has no tiny decoder installed here; leave the decoder out/],
    ];
    for (const [options, expected] of cases) {
      expect(await harness.refusal(harness.imagine('alice', options))).toMatch(expected);
    }
    expect(harness.fake.channelMessages().filter((message) => !(message.flags & 64))).toEqual([]);
  });
});
