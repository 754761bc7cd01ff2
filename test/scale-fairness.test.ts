import { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { admit, liveEntries, markStarted, release, type Admission } from '../src/queue/bullmq-fairness.ts';
import { RedisServer } from './redis-server.ts';

let server: RedisServer;
let redis: Redis;
beforeAll(async () => {
  server = await RedisServer.start();
  redis = new Redis(server.url);
});
afterAll(async () => {
  await redis?.quit();
  await server?.dispose();
});
beforeEach(async () => {
  await redis.flushall();
});

const limits = { maxQueue: 6, maxJobsPerUser: 3 };
const enqueue = (jobId: string, userId: string, overrides: Partial<typeof limits> = {}): Promise<Admission> =>
  admit(redis, { jobId, userId, jobKey: `test:jobs:${jobId}`, ...limits, ...overrides });
const tagOf = async (jobId: string, userId: string) => {
  const admission = await enqueue(jobId, userId);
  if (admission.verdict !== 'ok') throw new Error(`${jobId} refused: ${admission.verdict}`);
  return admission.tag;
};

describe('the BullMQ backend’s fair-order tags and limits (Lua in a real Redis)', () => {
  it('gives every user’s first job tag 0, each further job one more, so first jobs run before anyone’s second', async () => {
    expect([await tagOf('a1', 'alice'), await tagOf('a2', 'alice'), await tagOf('a3', 'alice')]).toEqual([0, 1, 2]);
    expect(await tagOf('b1', 'bob')).toBe(0);
    expect(await tagOf('b2', 'bob')).toBe(1);
    expect(await tagOf('c1', 'carol')).toBe(0);
  });

  it('never tags a newcomer below the job that started last, so a busy user cannot be overtaken forever', async () => {
    await tagOf('a1', 'alice');
    await tagOf('a2', 'alice');
    await tagOf('a3', 'alice');
    await markStarted(redis, 'a1');
    await release(redis, 'a1');
    await markStarted(redis, 'a2');
    await release(redis, 'a2');
    // The virtual time is now 1 (a2's tag): bob's first job gets 1 and runs before alice's waiting a3 (tag 2).
    expect(await tagOf('b1', 'bob')).toBe(1);
    expect(await tagOf('a4', 'alice')).toBe(3);
  });

  it('starts again from 0 once the queue is empty', async () => {
    await tagOf('a1', 'alice');
    await tagOf('a2', 'alice');
    await markStarted(redis, 'a2');
    await release(redis, 'a1');
    await release(redis, 'a2');
    expect(await tagOf('b1', 'bob')).toBe(0);
  });

  it('refuses beyond the per-user limit and the total limit, and counts released jobs out', async () => {
    for (const jobId of ['a1', 'a2', 'a3']) await tagOf(jobId, 'alice');
    expect(await enqueue('a4', 'alice')).toEqual({ verdict: 'user_limit' });
    for (const jobId of ['b1', 'b2', 'b3']) await tagOf(jobId, 'bob');
    expect(await enqueue('c1', 'carol')).toEqual({ verdict: 'queue_full' });
    await release(redis, 'a1');
    expect((await enqueue('c1', 'carol')).verdict).toBe('ok');
    expect((await liveEntries(redis)).map((entry) => entry.jobId).sort()).toEqual(['a2', 'a3', 'b1', 'b2', 'b3', 'c1']);
  });

  it('refuses an id it has seen, live or already a job', async () => {
    await tagOf('a1', 'alice');
    expect(await enqueue('a1', 'bob')).toEqual({ verdict: 'duplicate' });
    await redis.hset('test:jobs:x1', 'name', 'imagine');
    expect(await enqueue('x1', 'bob')).toEqual({ verdict: 'duplicate' });
  });
});
