import { InteractionResponseType, MessageFlags, PermissionFlagsBits, REST, Routes } from 'discord.js';
import { describe, expect, it } from 'vitest';
import { parseParameters } from '../src/image/parameters.ts';
import { readPngParameters } from '../src/image/png.ts';
import { BLOCKER_OPTIONS, customIds, embedField, startHarness, TINY_DECODER_NAME, useSharedTinyPipeline, type Harness } from './bot-harness.ts';
import { DEFAULT_MEMBER_PERMISSIONS, type InteractionHandle } from './fake-discord/index.ts';

const pipeline = useSharedTinyPipeline();
let harness: Harness | undefined;

function click(h: Harness, username: string, messageId: string, customId: string, memberPermissions?: bigint): InteractionHandle {
  return h.fake.clickButton({ messageId, customId, user: h.fake.user(username), ...(memberPermissions ? { memberPermissions } : {}) });
}

async function ephemeralReply(h: Harness, handle: InteractionHandle): Promise<string> {
  const callback = await h.fake.waitFor(() => h.fake.interaction(handle).callback, 5_000, 'button reply');
  expect(callback.type).toBe(InteractionResponseType.ChannelMessageWithSource);
  const data = callback.data as { content: string; flags: number };
  expect(data.flags & MessageFlags.Ephemeral).toBe(MessageFlags.Ephemeral);
  return data.content;
}

describe('result buttons', () => {
  it('🎲 Reroll posts the same settings with a new seed as a new message for whoever clicked', async () => {
    harness = await startHarness(pipeline);
    const { fake } = harness;
    const original = await harness.finalReply(
      harness.imagine('alice', { prompt: 'a castle', negative_prompt: 'fog', seed: 1234, steps: 3, guidance: 5, count: 2, scheduler: 'DDIM', size: '128x64' }),
    );
    const reroll = click(harness, 'bob', original.id, 'imagine:reroll');
    const rerolled = await harness.finalReply(reroll);

    expect(fake.interaction(reroll).callback?.type).toBe(InteractionResponseType.DeferredChannelMessageWithSource);
    expect(rerolled.id).not.toBe(original.id);
    const seeds = (embedField(rerolled, 'Seed') ?? '').split(', ');
    expect(seeds).toHaveLength(2);
    expect(seeds[0]).not.toBe('1234');
    expect(BigInt(seeds[1])).toBe(BigInt(seeds[0]) + 1n);
    for (const field of ['Negative prompt', 'Steps', 'Guidance', 'Scheduler', 'Size', 'Model']) {
      expect(embedField(rerolled, field)).toBe(embedField(original, field));
    }
    expect(rerolled.embeds[0].description).toBe('a castle');
    expect(parseParameters(readPngParameters(rerolled.attachments[0].data) ?? '').seed).toBe(seeds[0]);
    expect(customIds(rerolled)).toContain(`imagine:delete:${fake.user('bob').id}`);
    expect(fake.message(original.id)?.revisions.at(-1)?.attachments).toHaveLength(2);
  });

  it('Delete works for the requester and Manage Messages, and is refused to others', async () => {
    harness = await startHarness(pipeline);
    const { fake } = harness;
    const aliceId = fake.user('alice').id;
    const first = await harness.finalReply(harness.imagine('alice', { prompt: 'one' }));
    const second = await harness.finalReply(harness.imagine('alice', { prompt: 'two' }));

    const refused = click(harness, 'bob', first.id, `imagine:delete:${aliceId}`);
    expect(await ephemeralReply(harness, refused)).toBe(`Only <@${aliceId}> or members with **Manage Messages** can delete this.`);
    expect(fake.message(first.id)?.deletedAt).toBeNull();

    click(harness, 'alice', first.id, `imagine:delete:${aliceId}`);
    await fake.waitFor(() => fake.message(first.id)?.deletedAt, 5_000, 'deleted by requester');

    click(harness, 'carol', second.id, `imagine:delete:${aliceId}`, DEFAULT_MEMBER_PERMISSIONS | PermissionFlagsBits.ManageMessages);
    await fake.waitFor(() => fake.message(second.id)?.deletedAt, 5_000, 'deleted by moderator');
  });

  it('Cancel stops a queued job and a running one for the requester only, and the queue goes on', async () => {
    harness = await startHarness(pipeline);
    const { fake } = harness;
    const blocker = harness.imagine('alice', BLOCKER_OPTIONS);
    await harness.waitUntilRunning(blocker);
    const waiting = harness.imagine('bob', { prompt: 'waiting' });
    const waitingReply = await fake.waitFor(() => {
      const reply = fake.originalResponse(waiting);
      return reply?.content.includes('next in the queue') && reply;
    }, 5_000, 'queued reply');
    const cancelId = customIds(waitingReply).find((id) => id.startsWith('imagine:cancel:'));
    expect(cancelId).toBeDefined();

    expect(await ephemeralReply(harness, click(harness, 'carol', waitingReply.id, cancelId!))).toBe(
      `Only <@${fake.user('bob').id}> can cancel this job.`,
    );
    click(harness, 'bob', waitingReply.id, cancelId!);
    const cancelled = await harness.finalReply(waiting);
    expect(cancelled.content).toBe('> waiting\n🛑 Cancelled.');
    expect(cancelled.components).toEqual([]);

    const afterBlocker = harness.imagine('dave', { prompt: 'after the blocker' });
    const running = fake.originalResponse(blocker)!;
    const started = Date.now();
    click(harness, 'alice', running.id, customIds(running).find((id) => id.startsWith('imagine:cancel:'))!);
    expect((await harness.finalReply(blocker)).content).toBe('> blocker\n🛑 Cancelled.');
    expect((await harness.finalReply(afterBlocker, 10_000)).attachments).toHaveLength(1);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('buttons work after a restart: the job is rebuilt from the embed, or from the PNG parameters', async () => {
    harness = await startHarness(pipeline);
    const { fake } = harness;
    const original = await harness.finalReply(harness.imagine('alice', { prompt: 'survives restarts', seed: 7, steps: 3 }));
    await harness.restart();

    const fromEmbed = await harness.finalReply(click(harness, 'alice', original.id, 'imagine:reroll'));
    expect(fromEmbed.embeds[0].description).toBe('survives restarts');
    expect(embedField(fromEmbed, 'Steps')).toBe('3');

    // A message whose embed is gone (say, removed by a moderator's client): the PNG still holds the settings.
    const rest = new REST({ api: fake.apiUrl }).setToken(fake.botToken);
    await rest.patch(Routes.channelMessage(original.channelId, original.id), { body: { embeds: [] } });
    expect(fake.message(original.id)?.embeds).toEqual([]);
    const fromPng = await harness.finalReply(click(harness, 'bob', original.id, 'imagine:reroll'));
    expect(fromPng.embeds[0].description).toBe('survives restarts');
    expect(embedField(fromPng, 'Steps')).toBe('3');
    expect(embedField(fromPng, 'Seed')).not.toBe('7');

    const aliceId = fake.user('alice').id;
    click(harness, 'alice', original.id, `imagine:delete:${aliceId}`);
    await fake.waitFor(() => fake.message(original.id)?.deletedAt, 5_000, 'deleted after restart');
  });
});

describe('🎲 Reroll with a tiny decoder installed', () => {
  const withTinyDecoder = useSharedTinyPipeline({ tinyDecoder: true });

  it.each([
    { serverDefault: 'full', chosen: 'tiny' },
    { serverDefault: 'tiny', chosen: 'full' },
  ])('keeps the decoder the user chose ($chosen where the default is $serverDefault), from the embed and from the PNG', async ({ serverDefault, chosen }) => {
    harness = await startHarness(withTinyDecoder, { DEFAULT_DECODER: serverDefault });
    const { fake } = harness;
    const decoderOf = (message: Awaited<ReturnType<Harness['finalReply']>>) => ({
      embed: embedField(message, 'Decoder'),
      png: parseParameters(readPngParameters(message.attachments[0].data) ?? '').tinyDecoder,
    });
    const expected = chosen === 'tiny' ? { embed: `tiny (${TINY_DECODER_NAME})`, png: 'TAESD' } : { embed: undefined, png: undefined };

    const original = await harness.finalReply(harness.imagine('alice', { prompt: 'a decoder kept', steps: 2, decoder: chosen }));
    expect(decoderOf(original)).toEqual(expected);
    const fromEmbed = await harness.finalReply(click(harness, 'bob', original.id, 'imagine:reroll'));
    expect(decoderOf(fromEmbed)).toEqual(expected);

    const rest = new REST({ api: fake.apiUrl }).setToken(fake.botToken);
    await rest.patch(Routes.channelMessage(original.channelId, original.id), { body: { embeds: [] } });
    const fromPng = await harness.finalReply(click(harness, 'bob', original.id, 'imagine:reroll'));
    expect(decoderOf(fromPng)).toEqual(expected);
  });
});
