import { InteractionResponseType, PermissionFlagsBits } from 'discord.js';
import sharp from 'sharp';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readPngParameters } from '../src/image/png.ts';
import { ScaleCluster, type Role } from './scale-harness.ts';
import type { InteractionHandle } from './fake-discord/index.ts';
import { DEFAULT_MEMBER_PERMISSIONS } from './fake-discord/world.ts';

// npm run bot and npm run worker as real processes, a real redis-server, the fake Discord and the tiny model.
// The tiny model takes 20 to 50 ms a step at 512x512 on two cores: LONG runs for 2 to 4 s, well past the moment
// a test acts on it (the first progress edit) and past a worker's SHUTDOWN_TIMEOUT_MS (200 ms here).
const LONG = { size: '512x512', steps: 80 } as const;
const SHORT = { size: '256x256', steps: 20 } as const;
/** Outlasts a dead bot's lease (5 s), so the job is still running when the next bot takes it over. */
const LONGER = { size: '768x768', steps: 150 } as const;

let cluster: ScaleCluster;
beforeAll(async () => {
  // Append-only persistence, so stopping and starting Redis is an outage, not a wipe.
  cluster = await ScaleCluster.start({ redis: { appendOnly: true } });
});
afterAll(async () => cluster?.stop());
afterEach(async () => {
  await cluster.reset();
  expect(cluster.fake.internalErrors).toEqual([]);
});

const jobIdOf = (handle: InteractionHandle) => `job-${handle.id}`;

/** The workers that logged `message` for the job. */
function workersThat(workers: Role[], message: string, handle: InteractionHandle): string[] {
  return workers.filter((worker) => worker.logged(message, { jobId: jobIdOf(handle) }).length > 0).map((worker) => worker.name);
}

/** Posted jobs leave nothing in Redis but their "done" marks: no BullMQ job, no ledger entry. */
async function expectNothingLeft(): Promise<void> {
  const redis = cluster.connect();
  try {
    const deadline = Date.now() + 10_000;
    let left: string[] = [];
    do {
      left = [...(await redis.keys('imagine:jobs:*')).filter((key) => /^imagine:jobs:job-/.test(key)), ...Object.keys(await redis.hgetall('imagine-bot:live'))];
      if (left.length === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    } while (Date.now() < deadline);
    expect(left).toEqual([]);
    const marks = await redis.keys('imagine-bot:delivery:*');
    expect(marks.length).toBeGreaterThan(0);
    for (const mark of marks) expect(await redis.get(mark)).toBe('done');
  } finally {
    await redis.quit();
  }
}

async function expectImageOnce(handle: InteractionHandle, prompt: string): Promise<void> {
  const reply = await cluster.finalReply(handle, 90_000);
  expect(reply.content).toBe('');
  expect(reply.embeds[0]?.description).toBe(prompt);
  expect(reply.attachments).toHaveLength(1);
  expect(readPngParameters(new Uint8Array(reply.attachments[0].data))).toContain(prompt);
  expect(cluster.deliveries(handle)).toBe(1);
}

// Generous limits: these tests start processes and run real generations, so a busy machine slows them down.
describe('npm run bot with npm run worker processes over Redis (QUEUE_BACKEND=bullmq)', { timeout: 180_000 }, () => {
  it('serves a burst from several users on two workers: every command deferred at once, jobs spread over both, each image posted once', async () => {
    const [, workers] = await Promise.all([cluster.readyBot(), cluster.readyWorkers(2)]);
    const burst = Array.from({ length: 8 }, (_, index) => cluster.imagine(`user-${index % 4}`, { prompt: `burst ${index}`, ...SHORT }));
    await cluster.fake.waitFor(() => burst.every((handle) => cluster.fake.interaction(handle).callback), 5_000, 'all acknowledged');
    for (const handle of burst) {
      expect(cluster.fake.interaction(handle).callback?.type).toBe(InteractionResponseType.DeferredChannelMessageWithSource);
      expect(cluster.fake.interaction(handle).callbackLatencyMs).toBeLessThan(3000);
    }
    for (const [index, handle] of burst.entries()) await expectImageOnce(handle, `burst ${index}`);

    for (const handle of burst) expect(workersThat(workers, 'job completed', handle)).toHaveLength(1);
    for (const worker of workers) expect(worker.logged('job completed').length).toBeGreaterThan(0);
    await expectNothingLeft();
  });

  it('shows queue positions, keeps users fair, applies the per-user limit, and cancels waiting and running jobs', async () => {
    const [, [worker]] = await Promise.all([cluster.readyBot(), cluster.readyWorkers(1)]);
    const blocker = cluster.imagine('alice', { prompt: 'blocker', size: '512x512', steps: 150 });
    await cluster.replyMatching(blocker, /Generating — step [1-9]/);

    const aliceSecond = cluster.imagine('alice', { prompt: 'alice again' });
    await cluster.replyMatching(aliceSecond, /You are next in the queue/);
    expect(await cluster.refusal(cluster.imagine('alice', { prompt: 'alice third' }))).toBe(
      '🚦 You already have 2 jobs in the queue. Wait for one to finish, then try again.',
    );
    const bobFirst = cluster.imagine('bob', { prompt: 'bob first' });
    await cluster.replyMatching(bobFirst, /You are next in the queue/);
    await cluster.replyMatching(aliceSecond, /Queued — #2 in line/);
    const carol = cluster.imagine('carol', { prompt: 'carol' });
    await cluster.replyMatching(carol, /Queued — #2 in line/);
    await cluster.replyMatching(aliceSecond, /Queued — #3 in line/);

    await cluster.cancel(carol);
    expect((await cluster.finalReply(carol)).content).toBe('> carol\n🛑 Cancelled.');
    await cluster.replyMatching(aliceSecond, /Queued — #2 in line/);

    const cancelPressed = Date.now();
    await cluster.cancel(blocker);
    expect((await cluster.finalReply(blocker)).content).toBe('> blocker\n🛑 Cancelled.');
    expect(Date.now() - cancelPressed).toBeLessThan(5000);
    await worker.waitForLog('job failed', { jobId: jobIdOf(blocker), reason: 'cancelled:user' });

    await expectImageOnce(bobFirst, 'bob first');
    await expectImageOnce(aliceSecond, 'alice again');
    const started = worker.logged('job started').map((line) => line.jobId);
    expect(started).toEqual([blocker, bobFirst, aliceSecond].map(jobIdOf));
    await expectNothingLeft();
  });

  it('previews travel through Redis: the reply shows the image forming, then only the image, and no preview is left behind', async () => {
    const worker = cluster.startWorker({ PREVIEW_BUDGET_PERCENT: '1000' });
    await Promise.all([cluster.readyBot(), worker.waitForLog('taking jobs', {}, 60_000)]);
    const handle = cluster.imagine('alice', { prompt: 'previewed over redis', size: '256x256', steps: 60 });
    await expectImageOnce(handle, 'previewed over redis');
    const reply = await cluster.finalReply(handle);
    const previews = reply.revisions.filter((revision) => revision.attachments.some((attachment) => attachment.filename === 'preview.jpg'));
    expect(previews.length).toBeGreaterThanOrEqual(1);
    for (const revision of previews) {
      expect(await sharp(revision.attachments[0].data).metadata()).toMatchObject({ format: 'jpeg', width: 384, height: 384 });
      expect(revision.embeds[0].image?.url).toBe('attachment://preview.jpg');
      expect(revision.embeds[0].footer?.text).toMatch(/^Preview after step \d+\//);
    }
    expect(reply.embeds[0].image).toBeUndefined();
    const redis = cluster.connect();
    try {
      expect(await redis.keys('imagine-bot:preview:*')).toEqual([]);
    } finally {
      await redis.quit();
    }
    await expectNothingLeft();
  });

  it('a worker killed mid-job: the job runs again on the other worker and its image is posted once', async () => {
    const [, workers] = await Promise.all([cluster.readyBot(), cluster.readyWorkers(2)]);
    const long = cluster.imagine('alice', { prompt: 'survives a dead worker', ...LONG });
    const others = Array.from({ length: 4 }, (_, index) => cluster.imagine(`user-${index}`, { prompt: `meanwhile ${index}`, ...SHORT }));
    await cluster.replyMatching(long, /Generating — step [1-9]/);
    const [victimName] = workersThat(workers, 'job started', long);
    const victim = workers.find((worker) => worker.name === victimName)!;
    const survivor = workers.find((worker) => worker !== victim)!;
    victim.kill('SIGKILL');
    await victim.exit;

    await expectImageOnce(long, 'survives a dead worker');
    const rerun = survivor.logged('job started', { jobId: jobIdOf(long) });
    expect(rerun).toHaveLength(1);
    expect(rerun[0].stalls).toBe(1);
    expect(survivor.logged('job completed', { jobId: jobIdOf(long) })).toHaveLength(1);
    for (const [index, handle] of others.entries()) await expectImageOnce(handle, `meanwhile ${index}`);

    // A worker stopped with SIGTERM gives its running job back to the queue at once (after SHUTDOWN_TIMEOUT_MS).
    const [newcomer] = await cluster.readyWorkers(1);
    const handedBack = cluster.imagine('bob', { prompt: 'handed back on SIGTERM', ...LONG });
    await cluster.replyMatching(handedBack, /Generating — step [1-9]/);
    const [stoppingName] = workersThat([survivor, newcomer], 'job started', handedBack);
    const stopping = stoppingName === survivor.name ? survivor : newcomer;
    const taker = stopping === survivor ? newcomer : survivor;
    stopping.kill('SIGTERM');
    expect(await stopping.exit).toBe(0);
    expect(stopping.logged('shutting down: the running job goes back to the queue', { jobId: jobIdOf(handedBack) })).toHaveLength(1);
    await expectImageOnce(handedBack, 'handed back on SIGTERM');
    expect(taker.logged('job started', { jobId: jobIdOf(handedBack) })).toEqual([expect.objectContaining({ stalls: 0 })]);
    await expectNothingLeft();
  });

  it('the bot restarted mid-job: killed, its jobs are finished and posted by the next bot; stopped, it leaves them queued', async () => {
    const [firstBot, [worker]] = await Promise.all([cluster.readyBot(), cluster.readyWorkers(1)]);
    const finishesWhileDown = cluster.imagine('alice', { prompt: 'finished while no bot runs', ...LONG });
    const runsAcrossRestart = cluster.imagine('bob', { prompt: 'running across the restart', ...LONGER });
    const waitingAcrossRestart = ['carol', 'dave', 'erin'].map((user) => cluster.imagine(user, { prompt: `${user} waits across the restart`, ...SHORT }));
    await cluster.replyMatching(finishesWhileDown, /Generating — step [1-9]/);
    await cluster.replyMatching(waitingAcrossRestart[2], /Queued — #\d in line/);
    firstBot.kill('SIGKILL');
    await firstBot.exit;
    await worker.waitForLog('job completed', { jobId: jobIdOf(finishesWhileDown) });
    await worker.waitForLog('job started', { jobId: jobIdOf(runsAcrossRestart) });

    // One interaction's token dies meanwhile: its image will go to the channel, mentioning the user.
    cluster.fake.expireInteractionToken(runsAcrossRestart);
    const restartedAt = Date.now();
    const secondBot = await cluster.readyBot();
    await expectImageOnce(finishesWhileDown, 'finished while no bot runs');
    // Its reply went from its last progress straight to the image.
    expect(cluster.fake.originalResponse(finishesWhileDown)!.revisions.at(-2)?.content).toMatch(/Generating — step (\d+)\/\1 /);
    // A job still waiting shows its place in the queue again, from the new bot.
    await cluster.fake.waitFor(
      () => cluster.fake.originalResponse(waitingAcrossRestart[2])?.revisions.find((revision) => revision.at.getTime() > restartedAt && /Queued — #\d in line|next in the queue/.test(revision.content)),
      30_000,
      'queue position after the restart',
    );
    const inChannel = await cluster.fake.waitFor(
      () => cluster.fake.messages.find((message) => message.origin.kind === 'channel' && message.embeds[0]?.description === 'running across the restart'),
      60_000,
      'image posted in the channel',
    );
    expect(inChannel.content).toBe(`<@${cluster.fake.user('bob').id}>`);
    expect(inChannel.attachments).toHaveLength(1);
    expect(cluster.deliveries(runsAcrossRestart)).toBe(1);
    for (const [index, user] of ['carol', 'dave', 'erin'].entries()) await expectImageOnce(waitingAcrossRestart[index], `${user} waits across the restart`);
    expect(secondBot.logged('taking over a job another bot process queued')).toHaveLength(5);

    const acrossStop = cluster.imagine('carol', { prompt: 'across a graceful stop', ...LONG });
    await cluster.replyMatching(acrossStop, /Generating — step [1-9]/);
    secondBot.kill('SIGTERM');
    expect(await secondBot.exit).toBe(0);
    expect(cluster.fake.originalResponse(acrossStop)?.content).toMatch(/Generating/);
    const thirdBot = await cluster.readyBot();
    await expectImageOnce(acrossStop, 'across a graceful stop');
    // Jobs already posted are marked done in Redis: the third bot resumed only the one it had to.
    expect(thirdBot.logged('taking over a job another bot process queued').map((line) => line.jobId)).toEqual([jobIdOf(acrossStop)]);
    await expectNothingLeft();
  });

  it('two bots at once (a rolling restart): each job is followed by one bot; when that bot dies the other takes its jobs over', async () => {
    const [oldBot] = await Promise.all([cluster.readyBot(), cluster.readyWorkers(1)]);
    const before = ['alice', 'bob', 'carol', 'dave'].map((user, index) =>
      cluster.imagine(user, { prompt: `${user} before the second bot`, ...(index === 0 ? LONGER : SHORT) }),
    );
    await cluster.replyMatching(before[0], /Generating — step [1-9]/);
    const newBot = await cluster.readyBot();
    // New commands reach the newest gateway session, so the second bot queues and follows this one.
    const after = cluster.imagine('erin', { prompt: 'erin after the second bot', ...SHORT });
    await cluster.replyMatching(after, /Queued|next in the queue/);
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(newBot.logged('taking over a job another bot process queued')).toEqual([]);

    oldBot.kill('SIGKILL');
    for (const [index, user] of ['alice', 'bob', 'carol', 'dave'].entries()) await expectImageOnce(before[index], `${user} before the second bot`);
    await expectImageOnce(after, 'erin after the second bot');
    const tookOver = newBot.logged('taking over a job another bot process queued').map((line) => line.jobId);
    expect(tookOver.length).toBeGreaterThan(0);
    const posted = await cluster.fake.waitFor(() => {
      const lines = [...oldBot.logged('job delivered'), ...newBot.logged('job delivered')].map((line) => line.jobId as string);
      return lines.length >= 5 && lines;
    }, 10_000, 'delivery logs');
    expect(posted.sort()).toEqual([...before, after].map(jobIdOf).sort());
    expect(newBot.logged('job delivered').map((line) => line.jobId)).toEqual(expect.arrayContaining([...tookOver, jobIdOf(after)]));
    await expectNothingLeft();
  });

  it('servers’ settings and daily quotas live in Redis: every bot process reads them, and a restarted bot keeps counting', async () => {
    const [firstBot] = await Promise.all([cluster.readyBot(), cluster.readyWorkers(1)]);
    const mod = { user: cluster.fake.user('mod'), memberPermissions: DEFAULT_MEMBER_PERMISSIONS | PermissionFlagsBits.ManageGuild };
    const set = cluster.fake.sendCommand({ name: 'settings', options: { setting: 'user_daily_images', value: '2' }, ...mod });
    expect(await cluster.refusal(set)).toMatch(/^✅ Images per member per day set to 2\./);
    await expectImageOnce(cluster.imagine('alice', { prompt: 'alice one', ...SHORT }), 'alice one');

    // New commands reach the newest gateway session: the second bot takes them, with what the first one stored.
    const secondBot = await cluster.readyBot();
    await expectImageOnce(cluster.imagine('alice', { prompt: 'alice two', ...SHORT }), 'alice two');
    expect(secondBot.logged('job queued')).toHaveLength(1);
    expect(await cluster.refusal(cluster.imagine('alice', { prompt: 'alice three', ...SHORT }))).toMatch(/^📅 You have used 2 of your 2 images for today\./);

    firstBot.kill('SIGTERM');
    secondBot.kill('SIGTERM');
    await Promise.all([firstBot.exit, secondBot.exit]);
    await cluster.readyBot();
    expect(await cluster.refusal(cluster.imagine('alice', { prompt: 'alice four', ...SHORT }))).toMatch(/^📅 You have used 2 of your 2 images for today\./);
    const shown = await cluster.refusal(cluster.fake.sendCommand({ name: 'settings', options: {}, ...mod }));
    expect(shown).toContain('**Images per member per day**: 2\n');
    expect(shown).toContain(`<@${mod.user.id}>: images per member per day set to 2`);
  });

  it('a bot killed between posting a result and marking it posted: the next bot finds it in Discord and does not post it again', async () => {
    // Progress edits every minute only: the reply gets its first status edit, then the result.
    const [firstBot] = await Promise.all([cluster.readyBot({ PROGRESS_EDIT_INTERVAL_MS: '60000' }), cluster.readyWorkers(1)]);
    const job = cluster.imagine('alice', { prompt: 'posted just before the crash', ...LONG });
    await cluster.replyMatching(job, /in the queue|Generating/);
    // The result's edit is held back by a 429 for 3 s, and Redis goes away meanwhile: the edit lands, its "done" mark cannot.
    const held = cluster.fake.failNext({ method: 'PATCH', route: '/webhooks/:application/:token/messages/@original', status: 429, retryAfter: 3 });
    await cluster.fake.waitFor(() => held.hits === 1, 60_000, 'the result edit held back');
    await cluster.redis.stop();
    const reply = await cluster.finalReply(job);
    expect(reply.attachments).toHaveLength(1);
    firstBot.kill('SIGKILL');
    await firstBot.exit;

    await cluster.redis.resume();
    const secondBot = await cluster.readyBot();
    await secondBot.waitForLog('the job’s outcome was already posted by the bot process that stopped', { jobId: jobIdOf(job) });
    expect(cluster.deliveries(job)).toBe(1);
    await expectNothingLeft();
  });

  it('npm start with QUEUE_BACKEND=bullmq is a bot and a worker in one process; npm run worker adds more', async () => {
    const allInOne = cluster.startAllInOne();
    const [[worker]] = await Promise.all([
      cluster.readyWorkers(1),
      allInOne.waitForLog('logged in to Discord', {}, 30_000),
      allInOne.waitForLog('taking jobs', {}, 30_000),
    ]);
    const jobs = Array.from({ length: 6 }, (_, index) => cluster.imagine(`user-${index % 3}`, { prompt: `together ${index}`, ...SHORT }));
    for (const [index, handle] of jobs.entries()) await expectImageOnce(handle, `together ${index}`);
    expect(allInOne.logged('job completed').length).toBeGreaterThan(0);
    expect(worker.logged('job completed').length).toBeGreaterThan(0);
    allInOne.kill('SIGTERM');
    expect(await allInOne.exit).toBe(0);
    await expectNothingLeft();
  });

  it('Redis stopped: commands get a clear refusal at once and the bot keeps answering; when Redis is back, jobs run again', async () => {
    const [bot, [worker]] = await Promise.all([cluster.readyBot(), cluster.readyWorkers(1)]);
    const earlier = cluster.imagine('alice', { prompt: 'before the outage' });
    await expectImageOnce(earlier, 'before the outage');
    const inFlight = cluster.imagine('bob', { prompt: 'in flight during the outage', ...LONG });
    await cluster.replyMatching(inFlight, /Generating — step [1-9]/);

    await cluster.redis.stop();
    await bot.waitForLog('Redis is unreachable: new jobs are refused until it is back');
    const refused = cluster.imagine('carol', { prompt: 'during the outage' });
    expect(await cluster.refusal(refused)).toBe(
      '🔌 Image generation is temporarily unavailable (the job queue cannot be reached). Please try again in a few minutes.',
    );
    expect(cluster.fake.interaction(refused).callbackLatencyMs).toBeLessThan(3000);
    // Buttons that need no queue still work.
    const reply = cluster.fake.originalResponse(earlier)!;
    const deleteId = [...JSON.stringify(reply.components).matchAll(/"custom_id":"(imagine:delete:[^"]+)"/g)][0][1];
    cluster.fake.clickButton({ messageId: reply.id, customId: deleteId, user: cluster.fake.user('alice') });
    await cluster.fake.waitFor(() => cluster.fake.message(reply.id)?.deletedAt, 5_000, 'result deleted');

    await cluster.redis.resume();
    await bot.waitForLog('Redis is reachable again');
    await expectImageOnce(inFlight, 'in flight during the outage');
    expect(worker.logged('job completed', { jobId: jobIdOf(inFlight) })).toHaveLength(1);
    await expectImageOnce(cluster.imagine('carol', { prompt: 'after the outage' }), 'after the outage');
    await expectNothingLeft();
  });
});
