import { readFileSync } from 'node:fs';
import { PermissionFlagsBits } from 'discord.js';
import { describe, expect, it } from 'vitest';
import { DEFAULT_MEMBER_PERMISSIONS } from './fake-discord/world.ts';
import type { InteractionHandle, OptionValue } from './fake-discord/index.ts';
import { BLOCKER_OPTIONS, startHarness, useRedisServer, useSharedTinyPipeline, type Harness } from './bot-harness.ts';

const pipeline = useSharedTinyPipeline();
const MODERATOR = DEFAULT_MEMBER_PERMISSIONS | PermissionFlagsBits.ManageMessages;

function command(harness: Harness, name: string, username: string, options: Record<string, OptionValue> = {}, memberPermissions = DEFAULT_MEMBER_PERMISSIONS): InteractionHandle {
  return harness.fake.sendCommand({ name, options, user: harness.fake.user(username), memberPermissions });
}

describe('/queue', () => {
  it('shows a member their jobs and places, a moderator the server’s jobs; the requester or a moderator cancels', async () => {
    const harness = await startHarness(pipeline);
    const blocker = harness.imagine('alice', { ...BLOCKER_OPTIONS, prompt: 'alice blocker' });
    await harness.waitUntilRunning(blocker);
    const aliceSecond = harness.imagine('alice', { prompt: 'alice second' });
    const bobFirst = harness.imagine('bob', { prompt: 'bob *first*' });
    await harness.replyMatching(aliceSecond, /#2 in line/);
    const ids = Object.fromEntries((await harness.queue.list()).map((job) => [job.prompt, job.id]));
    const bob = harness.fake.user('bob');

    const aliceView = await harness.refusal(command(harness, 'queue', 'alice'));
    expect(aliceView).toMatch(/^📋 \*\*Queue\*\*: 3 jobs — 1 running, 2 waiting\.\n\n\*\*Your jobs\*\*\n/);
    expect(aliceView).toContain(`• \`${ids['alice blocker']}\` — ▶️ running (image 1/4, step `);
    expect(aliceView).toContain(`• \`${ids['alice second']}\` — ⏳ #2 in line — “alice second”`);
    expect(aliceView).not.toContain('bob');

    const bobView = await harness.refusal(command(harness, 'queue', 'bob'));
    expect(bobView).toContain(`• \`${ids['bob *first*']}\` — ⏳ next — “bob \\*first\\*”`);
    expect(bobView).not.toContain('alice');

    const modView = await harness.refusal(command(harness, 'queue', 'mod', {}, MODERATOR));
    expect(modView).toContain('**Your jobs**\nNone. Start one with /imagine.');
    expect(modView).toContain(`**This server’s other jobs** (you moderate it)\n• \`${ids['alice blocker']}\` <@${harness.fake.user('alice').id}> — ▶️ running`);
    expect(modView).toContain(`• \`${ids['bob *first*']}\` <@${bob.id}> — ⏳ next — “bob \\*first\\*”`);

    expect(await harness.refusal(command(harness, 'queue', 'alice', { cancel: ids['bob *first*'] }))).toBe('🔒 Only the job’s requester or a moderator of its server can cancel it.');
    expect(await harness.refusal(command(harness, 'queue', 'alice', { cancel: 'nope' }))).toBe('⚠️ No job `nope` is waiting or running. `/queue` lists the ids.');
    expect(await harness.refusal(command(harness, 'queue', 'mod', { cancel: ids['bob *first*'] }, MODERATOR))).toBe(`🛑 Cancelled job \`${ids['bob *first*']}\` of <@${bob.id}>.`);
    expect((await harness.finalReply(bobFirst)).content).toBe('> bob \\*first\\*\n🛑 Cancelled.');
    expect(await harness.refusal(command(harness, 'queue', 'alice', { cancel: ids['alice blocker'] }))).toBe(`🛑 Cancelled job \`${ids['alice blocker']}\`.`);
    expect((await harness.finalReply(blocker)).content).toBe('> alice blocker\n🛑 Cancelled.');
    expect((await harness.finalReply(aliceSecond)).attachments).toHaveLength(1);
    expect(await harness.refusal(command(harness, 'queue', 'alice'))).toBe('📋 **Queue**: 0 jobs — 0 running, 0 waiting.\n\n**Your jobs**\nNone. Start one with /imagine.');
  });
});

describe('/queue with two bot processes on one Redis (QUEUE_BACKEND=bullmq)', () => {
  const redisUrl = useRedisServer();

  it('cancels a job the other bot process follows, waiting or running; that bot posts the cancel', async () => {
    const environment = { QUEUE_BACKEND: 'bullmq', REDIS_URL: redisUrl() };
    const [first, second] = [await startHarness(pipeline, environment), await startHarness(pipeline, environment)];
    const running = first.imagine('alice', { ...BLOCKER_OPTIONS, prompt: 'alice blocker' });
    await first.waitUntilRunning(running);
    const waiting = first.imagine('bob', { ...BLOCKER_OPTIONS, prompt: 'bob blocker' });
    await first.replyMatching(waiting, /Generating|in the queue/);
    const ids = Object.fromEntries((await second.queue.list()).map((job) => [job.prompt, job.id]));
    expect(second.queue.find(ids['bob blocker'])).toBeUndefined();

    for (const [prompt, handle] of [['bob blocker', waiting], ['alice blocker', running]] as const) {
      const answer = await second.refusal(command(second, 'queue', 'guild-owner', { cancel: ids[prompt] }));
      expect(answer).toMatch(new RegExp(`^🛑 Cancelled job \`${ids[prompt]}\` of <@\\d+>\\.$`));
      expect((await first.finalReply(handle)).content).toBe(`> ${prompt}\n🛑 Cancelled.`);
    }
    expect(await second.refusal(command(second, 'queue', 'guild-owner', { cancel: ids['bob blocker'] }))).toMatch(/^⚠️ No job `.+` is waiting or running/);
  });
});

describe('/info', () => {
  it('shows the model, what it runs on, the queue, the images left today, the version and the uptime', async () => {
    const harness = await startHarness(pipeline, { DAILY_IMAGES_PER_USER: '5', DAILY_IMAGES_PER_SERVER: '50' });
    await harness.finalReply(harness.imagine('alice', { prompt: 'a fox', count: 2 }));
    const version = (JSON.parse(readFileSync('package.json', 'utf8')) as { version: string }).version;
    const info = await harness.refusal(command(harness, 'info', 'alice'));
    const lines = info.split('\n');
    expect(lines[0]).toMatch(new RegExp(`^ℹ️ \\*\\*imagine-bot ${version.replace(/\./g, '\\.')}\\*\\* — up (\\d+ h )?\\d+ min$`));
    expect(lines[1]).toMatch(/^\*\*Model\*\*: tiny/);
    expect(lines[2]).toBe('**Runs on**: cpu');
    expect(lines[3]).toBe('**Queue**: 0 jobs, 0 of them yours');
    expect(lines[4]).toMatch(/^\*\*Your images today\*\*: 2 of 5, 3 left — resets <t:\d+:R>$/);
    expect(lines[5]).toMatch(/^\*\*This server’s images today\*\*: 2 of 50, 48 left — resets <t:\d+:R>$/);
    expect(await harness.refusal(command(harness, 'info', 'guild-owner'))).toContain('**Your images today**: no quota (you are the bot’s owner)');
  });
});
