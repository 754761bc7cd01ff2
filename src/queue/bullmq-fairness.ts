import type { Redis } from 'ioredis';
import { KEYS } from './bullmq-protocol.ts';

/*
 * Fairness and limits for the BullMQ backend. BullMQ's per-group fairness is a Pro feature, so jobs carry a
 * priority instead: the same start-time fair queueing tag as FairOrder (one more than the newest tag the
 * user already has waiting or running, never below the tag of the job that started last), given to BullMQ as
 * the job's priority. BullMQ runs equal priorities in arrival order, so every user's first job runs before
 * anyone's second, whichever worker picks it. The ledger of live jobs behind the tags also gives the
 * MAX_QUEUE and MAX_JOBS_PER_USER counts, all in one atomic script, so two bots cannot both take the last slot.
 */

const ADMIT = `
local live, virtualTimeKey, jobKey = KEYS[1], KEYS[2], KEYS[3]
local jobId, userId, maxQueue, maxPerUser, now = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local guildId, maxPerGuild = ARGV[6], tonumber(ARGV[7])
if redis.call('EXISTS', jobKey) == 1 or redis.call('HEXISTS', live, jobId) == 1 then return {'duplicate', 0} end
local entries = redis.call('HVALS', live)
if #entries >= maxQueue then return {'queue_full', 0} end
local virtualTime = tonumber(redis.call('GET', virtualTimeKey) or '0')
if #entries == 0 then
  virtualTime = 0
  redis.call('SET', virtualTimeKey, 0)
end
local tag, mine, guild = virtualTime, 0, 0
for _, raw in ipairs(entries) do
  local entry = cjson.decode(raw)
  if entry.user == userId then
    mine = mine + 1
    if entry.tag + 1 > tag then tag = entry.tag + 1 end
  end
  if guildId ~= '' and entry.guild == guildId then guild = guild + 1 end
end
if mine >= maxPerUser then return {'user_limit', 0} end
if maxPerGuild and guild >= maxPerGuild then return {'server_limit', 0} end
redis.call('HSET', live, jobId, cjson.encode({user = userId, guild = guildId, tag = tag, at = now}))
return {'ok', tag}
`;

const START = `
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local tag = cjson.decode(raw).tag
if tag > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], tag) end
return 1
`;

export type Admission = { verdict: 'ok'; tag: number } | { verdict: 'duplicate' | 'queue_full' | 'user_limit' | 'server_limit' };

export interface AdmissionRequest {
  jobId: string;
  userId: string;
  /** The BullMQ hash of the job, so an id that already has a job (waiting, running or finished) is a duplicate. */
  jobKey: string;
  maxQueue: number;
  maxJobsPerUser: number;
  /** The server the job comes from, and the most jobs it may have waiting or running (its share). */
  guildId?: string;
  queueShare?: number;
}

/** Checks the limits and, when the job fits, records it and returns its fair-order tag. */
export async function admit(redis: Redis, request: AdmissionRequest): Promise<Admission> {
  const [verdict, tag] = (await redis.eval(
    ADMIT,
    3,
    KEYS.live,
    KEYS.virtualTime,
    request.jobKey,
    request.jobId,
    request.userId,
    request.maxQueue,
    request.maxJobsPerUser,
    Date.now(),
    request.guildId ?? '',
    request.queueShare ?? '',
  )) as [string, number];
  if (verdict === 'ok') return { verdict, tag };
  if (verdict === 'duplicate' || verdict === 'queue_full' || verdict === 'user_limit' || verdict === 'server_limit') return { verdict };
  throw new Error(`unexpected admission verdict ${verdict}`);
}

/** A worker started the job: the virtual time moves up to its tag. */
export async function markStarted(redis: Redis, jobId: string): Promise<void> {
  await redis.eval(START, 2, KEYS.live, KEYS.virtualTime, jobId);
}

/** The job no longer waits or runs (finished, failed, cancelled, lost). */
export async function release(redis: Redis, jobId: string): Promise<void> {
  await redis.hdel(KEYS.live, jobId);
}

export interface LiveEntry {
  jobId: string;
  userId: string;
  tag: number;
  admittedAt: number;
}

export async function liveEntries(redis: Redis): Promise<LiveEntry[]> {
  const raw = await redis.hgetall(KEYS.live);
  return Object.entries(raw).map(([jobId, json]) => {
    const entry = JSON.parse(json) as { user: string; tag: number; at: number };
    return { jobId, userId: entry.user, tag: entry.tag, admittedAt: entry.at };
  });
}
