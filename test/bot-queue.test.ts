import { InteractionResponseType } from 'discord.js';
import { describe, expect, it } from 'vitest';
import type { ImageGenerator } from '../src/jobs/runner.ts';
import { PipelineThread } from '../src/worker/pipeline-thread.ts';
import { BLOCKER_OPTIONS, startHarness, useSharedTinyPipeline, type Harness } from './bot-harness.ts';

const pipeline = useSharedTinyPipeline();
let harness: Harness | undefined;

describe('the queue as users see it', () => {
  it('a burst from many users while the pipeline is busy: every command is deferred under 3 s and answered', async () => {
    harness = await startHarness(pipeline);
    const { fake } = harness;
    const blocker = harness.imagine('alice', BLOCKER_OPTIONS);
    await harness.waitUntilRunning(blocker);
    const burst = Array.from({ length: 12 }, (_, index) => harness!.imagine(`user-${index}`, { prompt: `burst ${index}`, seed: index }));
    await fake.waitFor(() => burst.every((handle) => fake.interaction(handle).callback), 5_000, 'all acknowledged');
    for (const handle of burst) {
      expect(fake.interaction(handle).callback?.type).toBe(InteractionResponseType.DeferredChannelMessageWithSource);
      expect(fake.interaction(handle).callbackLatencyMs).toBeLessThan(3000);
    }
    await harness.replyMatching(burst[11], /#12 in line/);
    await harness.cancel(blocker);
    for (const [index, handle] of burst.entries()) {
      const reply = await harness.finalReply(handle);
      expect(reply.attachments.map((attachment) => attachment.filename)).toEqual([`imagine-${index}-1.png`]);
    }
  });

  it('is fair: a user’s second job waits behind another user’s first, and positions update', async () => {
    harness = await startHarness(pipeline);
    const blocker = harness.imagine('alice', BLOCKER_OPTIONS);
    await harness.waitUntilRunning(blocker);
    const aliceSecond = harness.imagine('alice', { prompt: 'alice again' });
    await harness.replyMatching(aliceSecond, /next in the queue/);
    const bobFirst = harness.imagine('bob', { prompt: 'bob first' });
    await harness.replyMatching(bobFirst, /next in the queue/);
    await harness.replyMatching(aliceSecond, /#2 in line/);
    await harness.cancel(blocker);
    const bobReply = await harness.finalReply(bobFirst);
    const aliceReply = await harness.finalReply(aliceSecond);
    expect(bobReply.editedAt!.getTime()).toBeLessThanOrEqual(aliceReply.editedAt!.getTime());
  });

  it('refuses politely beyond MAX_JOBS_PER_USER and MAX_QUEUE, and accepts again later', async () => {
    harness = await startHarness(pipeline, { MAX_QUEUE: '2', MAX_JOBS_PER_USER: '1' });
    const blocker = harness.imagine('alice', BLOCKER_OPTIONS);
    await harness.waitUntilRunning(blocker);
    expect(await harness.refusal(harness.imagine('alice', { prompt: 'second' }))).toBe(
      '🚦 You already have 1 job in the queue. Wait for one to finish, then try again.',
    );
    const bob = harness.imagine('bob', { prompt: 'bob' });
    await harness.replyMatching(bob, /next in the queue/);
    expect(await harness.refusal(harness.imagine('carol', { prompt: 'carol' }))).toBe('🚦 The queue is full (2 jobs). Please try again in a minute.');
    await harness.cancel(blocker);
    await harness.finalReply(bob);
    expect((await harness.finalReply(harness.imagine('carol', { prompt: 'carol later' }))).attachments).toHaveLength(1);
  });

  it('accepts commands while the model loads and says so in the reply', async () => {
    let release!: () => void;
    const loaded = new Promise<void>((resolve) => (release = resolve));
    // The real pipeline, reached only once the test lets the "load" finish.
    const slowToLoad: ImageGenerator = {
      ready: loaded.then(() => pipeline.ready),
      generate: (request, options) => pipeline.generate(request, options),
    };
    harness = await startHarness(slowToLoad);
    const first = harness.imagine('alice', { prompt: 'early' });
    const second = harness.imagine('bob', { prompt: 'early too' });
    await harness.replyMatching(first, /The model is still loading — you are #1 in the queue/);
    await harness.replyMatching(second, /The model is still loading — you are #2 in the queue/);
    release();
    expect((await harness.finalReply(first)).attachments).toHaveLength(1);
    expect((await harness.finalReply(second)).attachments).toHaveLength(1);
  });

  it('a model that cannot load fails each job with the job id to give an admin, the server path only in the log', async () => {
    const broken = PipelineThread.start({ modelDir: '/nonexistent/model' });
    try {
      harness = await startHarness(broken);
      const logs = harness.logs;
      for (const [user, prompt] of [
        ['alice', 'x'],
        ['bob', 'y'],
      ]) {
        const reply = await harness.finalReply(harness.imagine(user, { prompt }));
        const [, jobId] = /^> \w\n❌ Generation failed: The model failed — ask an admin \(job (\S+)\)\.$/.exec(reply.content) ?? [];
        expect(jobId).toBeDefined();
        expect(reply.components).toEqual([]);
        expect(logs.find((line) => line.msg === 'job failed on an internal error' && line.jobId === jobId)?.error).toMatchObject({
          message: expect.stringContaining('/nonexistent/model'),
        });
      }
    } finally {
      await broken.dispose();
    }
  });
});
