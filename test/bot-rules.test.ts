import { InteractionResponseType, PermissionFlagsBits } from 'discord.js';
import { describe, expect, it } from 'vitest';
import { DEFAULT_MEMBER_PERMISSIONS } from './fake-discord/world.ts';
import type { InteractionHandle, InvocationOptions, OptionValue } from './fake-discord/index.ts';
import { BLOCKER_OPTIONS, startHarness, useRedisServer, useSharedTinyPipeline, type Harness } from './bot-harness.ts';

const pipeline = useSharedTinyPipeline();
const MODERATOR = DEFAULT_MEMBER_PERMISSIONS | PermissionFlagsBits.ManageGuild;
/** The fake guild's roles (discord.js knows a member's roles only when the guild has them). */
const ROLES = { roleNames: ['artists', 'muted'] };
const OTHER_CHANNEL = '400000000000000001';

async function set(harness: Harness, setting: string, value?: string): Promise<void> {
  const handle = harness.fake.sendCommand({ name: 'settings', options: value === undefined ? { setting } : { setting, value }, user: harness.fake.user('mod'), memberPermissions: MODERATOR });
  expect(await harness.refusal(handle)).toMatch(/^✅/);
}

/** The job was taken: the interaction got a deferred public reply. */
async function accepted(harness: Harness, handle: InteractionHandle): Promise<void> {
  const interaction = await harness.fake.waitFor(() => harness.fake.interaction(handle).callback && harness.fake.interaction(handle), 5_000, 'callback');
  const data = interaction.callback?.data as { content?: string } | undefined;
  expect(interaction.callback?.type, data?.content).toBe(InteractionResponseType.DeferredChannelMessageWithSource);
}

function imagine(harness: Harness, username: string, options: Record<string, OptionValue> = { prompt: 'a fox' }, invocation: InvocationOptions = {}): InteractionHandle {
  return harness.imagine(username, options, invocation);
}

describe('who may use /imagine, and where', () => {
  it('blocked members and roles are refused; the bot’s owner is not', async () => {
    const harness = await startHarness(pipeline, {}, ROLES);
    const MUTED = harness.fake.roleId('muted');
    const alice = harness.fake.user('alice');
    await set(harness, 'blocked_users', `<@${alice.id}>, <@${harness.fake.user('guild-owner').id}>`);
    await set(harness, 'blocked_roles', `<@&${MUTED}>`);
    const blocked = '🚫 You cannot use /imagine on this server. Ask its moderators if you think this is a mistake.';
    expect(await harness.refusal(imagine(harness, 'alice'))).toBe(blocked);
    expect(await harness.refusal(imagine(harness, 'bob', { prompt: 'a fox' }, { roles: [MUTED] }))).toBe(blocked);
    await accepted(harness, imagine(harness, 'bob'));
    await accepted(harness, imagine(harness, 'guild-owner', { prompt: 'a fox' }, { roles: [MUTED] }));
    await set(harness, 'blocked_users');
    await accepted(harness, imagine(harness, 'alice'));
  });

  it('allowed channels and roles', async () => {
    const harness = await startHarness(pipeline, {}, ROLES);
    const ARTISTS = harness.fake.roleId('artists');
    await set(harness, 'allowed_channels', OTHER_CHANNEL);
    expect(await harness.refusal(imagine(harness, 'alice'))).toBe(`📍 On this server, /imagine works in <#${OTHER_CHANNEL}>.`);
    await set(harness, 'allowed_channels', `<#${OTHER_CHANNEL}> <#${harness.fake.channelId}>`);
    await accepted(harness, imagine(harness, 'alice'));

    await set(harness, 'allowed_roles', `<@&${ARTISTS}>`);
    expect(await harness.refusal(imagine(harness, 'bob'))).toBe(`🔒 On this server, /imagine is for members with the role <@&${ARTISTS}>.`);
    await accepted(harness, imagine(harness, 'bob', { prompt: 'a fox' }, { roles: [ARTISTS] }));
  });
});

describe('queue share', () => {
  it('a server holds at most its share of the queue', async () => {
    const harness = await startHarness(pipeline);
    await set(harness, 'queue_share', '2');
    const blocker = imagine(harness, 'alice', BLOCKER_OPTIONS);
    await harness.waitUntilRunning(blocker);
    await accepted(harness, imagine(harness, 'bob'));
    expect(await harness.refusal(imagine(harness, 'carol'))).toBe('🚦 This server already has 2 jobs in the queue, its share. Please try again in a minute.');
    await harness.cancel(blocker);
    await harness.finalReply(blocker);
    await accepted(harness, imagine(harness, 'carol'));
  });
});

describe('daily quotas', () => {
  it('per member and per server, kept across a restart, with when they reset; a cancelled job gives its images back', async () => {
    const harness = await startHarness(pipeline, { DAILY_IMAGES_PER_USER: '10' });
    await set(harness, 'user_daily_images', '4');
    await harness.finalReply(imagine(harness, 'alice', { prompt: 'a fox', count: 3 }));
    const refusal = await harness.refusal(imagine(harness, 'alice', { prompt: 'a fox', count: 2 }));
    expect(refusal).toMatch(/^📅 You have used 3 of your 4 images for today — 1 left, and this job needs 2\. The quota resets <t:(\d+):R> \(<t:\1:t>\)\.$/);
    const resetAt = Number(/<t:(\d+):R>/.exec(refusal)![1]) * 1000;
    const now = Date.now();
    expect(resetAt).toBe(Date.UTC(new Date(now).getUTCFullYear(), new Date(now).getUTCMonth(), new Date(now).getUTCDate() + 1));

    await harness.restart();
    await harness.finalReply(imagine(harness, 'alice', { prompt: 'a fox' }));
    expect(await harness.refusal(imagine(harness, 'alice'))).toMatch(/^📅 You have used 4 of your 4 images for today\. The quota resets/);

    // Bob's blocker is cancelled before it draws anything: its 4 images are his again.
    const blocker = imagine(harness, 'bob', BLOCKER_OPTIONS);
    await harness.waitUntilRunning(blocker);
    expect(await harness.refusal(imagine(harness, 'bob'))).toMatch(/^📅 You have used 4 of your 4/);
    await harness.cancel(blocker);
    await harness.replyMatching(blocker, /cancel/i);
    await accepted(harness, imagine(harness, 'bob', { prompt: 'a fox', count: 4 }));

    await set(harness, 'server_daily_images', '8');
    expect(await harness.refusal(imagine(harness, 'carol'))).toMatch(/^📅 This server has used 8 of its 8 images for today\. The quota resets/);
    // Back to the operator's limits: 10 images a member, none for the server.
    await set(harness, 'server_daily_images');
    await set(harness, 'user_daily_images');
    await accepted(harness, imagine(harness, 'carol', { prompt: 'a fox', count: 4 }));
  });

  it('the bot’s owner is held to no quota', async () => {
    const harness = await startHarness(pipeline, { DAILY_IMAGES_PER_USER: '1' });
    await harness.finalReply(imagine(harness, 'guild-owner', { prompt: 'a fox', count: 2 }));
    await accepted(harness, imagine(harness, 'guild-owner', { prompt: 'a fox', count: 2 }));
  });
});

describe('daily quotas over Redis (QUEUE_BACKEND=bullmq)', () => {
  const redisUrl = useRedisServer();

  it('a job the next bot process takes over gives its images back when it ends without any', async () => {
    const harness = await startHarness(pipeline, { DAILY_IMAGES_PER_USER: '4', QUEUE_BACKEND: 'bullmq', REDIS_URL: redisUrl() });
    const blocker = imagine(harness, 'bob', BLOCKER_OPTIONS);
    await harness.waitUntilRunning(blocker);
    await harness.restart();
    expect(await harness.refusal(imagine(harness, 'bob'))).toMatch(/^📅 You have used 4 of your 4/);
    await harness.cancel(blocker);
    await harness.replyMatching(blocker, /Cancelled/);
    await accepted(harness, imagine(harness, 'bob', { prompt: 'a fox', count: 4 }));
  });
});

describe('banned words', () => {
  it('are refused in the prompt and the negative prompt whatever the case, width or invisible characters, without naming them', async () => {
    const harness = await startHarness(pipeline);
    await set(harness, 'banned_words', 'fox, red car');
    const refusal = '🚫 Your prompt uses a word or phrase this server does not allow. Please rephrase it.';
    for (const prompt of ['a FOX', 'a ｆｏｘ', 'a f\u200bo\u200dx', 'a fo\u00adx', 'a Fox!', 'a red-car', 'a RED  car']) {
      expect(await harness.refusal(imagine(harness, 'alice', { prompt })), prompt).toBe(refusal);
    }
    expect(await harness.refusal(imagine(harness, 'alice', { prompt: 'a cat', negative_prompt: 'fox' }))).toBe(refusal);
    expect(await harness.refusal(imagine(harness, 'alice', { prompt: 'a cat --no fox' }))).toBe(refusal);
    await accepted(harness, imagine(harness, 'alice', { prompt: 'firefox foxes and a redcar' }));
  });
});
