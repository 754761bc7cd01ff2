import type { Redis } from 'ioredis';
import { KEYS } from './bullmq-protocol.ts';

/*
 * Exactly one bot follows a job at a time (edits its progress, posts its result): the one holding its lease in
 * Redis. The bot that queues a job takes the lease first and renews it while it lives; when it stops (or dies and
 * the lease lapses) the next bot that scans the queue takes it over. Once the result is posted the key says
 * "done", so no bot, a restarted one included, ever posts it again.
 */

const TAKE = `
local value = redis.call('GET', KEYS[1])
local mine = 'owner:' .. ARGV[1]
if value == false or value == mine then
  redis.call('SET', KEYS[1], mine, 'PX', ARGV[2])
  return 'mine'
end
if value == 'done' then return 'done' end
return 'taken'
`;

const LET_GO = `
if redis.call('GET', KEYS[1]) == 'owner:' .. ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
`;

/** 'mine': this bot holds the lease (taken or renewed); 'taken': another bot holds it; 'done': the job was posted. */
export type Ownership = 'mine' | 'taken' | 'done';

export async function takeOwnership(redis: Redis, jobId: string, botId: string, leaseMs: number): Promise<Ownership> {
  return (await redis.eval(TAKE, 1, KEYS.delivery(jobId), botId, leaseMs)) as Ownership;
}

/** Frees the lease at once (a clean shutdown), so the next bot need not wait for it to lapse. */
export async function letGo(redis: Redis, jobId: string, botId: string): Promise<void> {
  await redis.eval(LET_GO, 1, KEYS.delivery(jobId), botId);
}

/** The job's outcome is posted; the mark outlives the job by `ttlMs`. */
export async function markDone(redis: Redis, jobId: string, ttlMs: number): Promise<void> {
  await redis.set(KEYS.delivery(jobId), 'done', 'PX', ttlMs);
}

/** Whether some bot holds the job or has posted it (a cheap look before trying to take it). */
export async function isOwned(redis: Redis, jobId: string): Promise<boolean> {
  return (await redis.exists(KEYS.delivery(jobId))) === 1;
}
