import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { compactSettings, parseGuildSettings, type GuildSettings } from './guild-settings.ts';
import {
  KEPT_CHANGES,
  SettingsStoreError,
  type ImageReservation,
  type ImageUsage,
  type ReservationVerdict,
  type SettingsChange,
  type SettingsStore,
  type StoredSettings,
} from './store.ts';

const PREFIX = 'imagine-bot';
const KEYS = {
  /** Hash {version, settings}. */
  settings: (guildId: string) => `${PREFIX}:settings:${guildId}`,
  /** List of JSON changes, newest first. */
  changes: (guildId: string) => `${PREFIX}:settings-changes:${guildId}`,
  /** Hash user id → images counted that day; the field `*` holds the server's total. */
  images: (day: string, guildId: string) => `${PREFIX}:images:${day}:${guildId}`,
};
const SERVER_TOTAL = '*';
/** How long a starting bot waits for Redis before it leaves the check of every server's settings to their reads. */
const READY_WAIT_MS = 5_000;
/** A day's counts outlive the day by this much (for a look back), then Redis drops them. */
const COUNTS_TTL_S = 8 * 86_400;

const REPLACE = `
if tonumber(redis.call('HGET', KEYS[1], 'version') or '0') ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'version', tonumber(ARGV[1]) + 1, 'settings', ARGV[2])
redis.call('LPUSH', KEYS[2], ARGV[3])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1)
return 1
`;

const RESERVE = `
local images = tonumber(ARGV[2])
local user = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local server = tonumber(redis.call('HGET', KEYS[1], '${SERVER_TOTAL}') or '0')
if ARGV[3] ~= '' and user + images > tonumber(ARGV[3]) then return {'user', user, tonumber(ARGV[3])} end
if ARGV[4] ~= '' and server + images > tonumber(ARGV[4]) then return {'server', server, tonumber(ARGV[4])} end
redis.call('HINCRBY', KEYS[1], ARGV[1], images)
redis.call('HINCRBY', KEYS[1], '${SERVER_TOTAL}', images)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
return {'ok', 0, 0}
`;

const GIVE_BACK = `
for _, field in ipairs({ARGV[1], '${SERVER_TOTAL}'}) do
  local left = tonumber(redis.call('HGET', KEYS[1], field) or '0') - tonumber(ARGV[2])
  redis.call('HSET', KEYS[1], field, math.max(left, 0))
end
`;

/**
 * The store every bot process shares with QUEUE_BACKEND=bullmq: the same Redis as the queue. Changes are
 * compare-and-set on a version (a Lua script), and quotas are checked and counted in one script, so two bots
 * acting at once neither lose a change nor both take the last image of a quota.
 */
export class RedisSettingsStore implements SettingsStore {
  constructor(private readonly redis: Redis) {}

  /**
   * Reads every server's settings once, so a bot does not start on data it cannot read; throws SettingsStoreError.
   * False when Redis did not answer within a few seconds (then each read checks what it reads).
   */
  async checkAll(): Promise<boolean> {
    if (this.redis.status !== 'ready') await Promise.race([once(this.redis, 'ready'), sleep(READY_WAIT_MS, undefined, { ref: false })]);
    if (this.redis.status !== 'ready') return false;
    let cursor = '0';
    do {
      const [next, keys] = await this.redis.scan(cursor, 'MATCH', KEYS.settings('*'), 'COUNT', 200);
      cursor = next;
      for (const key of keys) await this.read(key.slice(KEYS.settings('').length));
    } while (cursor !== '0');
    return true;
  }

  async read(guildId: string): Promise<StoredSettings> {
    const [version, json] = await this.redis.hmget(KEYS.settings(guildId), 'version', 'settings');
    if (version === null && json === null) return { settings: {}, version: 0 };
    try {
      if (json === null || !/^\d+$/.test(version ?? '')) throw new Error('the version or the settings are missing');
      return { settings: parseGuildSettings(json), version: Number(version) };
    } catch (error) {
      throw new SettingsStoreError(`the settings of server ${guildId} in Redis (${KEYS.settings(guildId)}) cannot be read: ${(error as Error).message}`);
    }
  }

  async replace(guildId: string, expectedVersion: number, settings: GuildSettings, change: SettingsChange): Promise<boolean> {
    const written = await this.redis.eval(
      REPLACE,
      2,
      KEYS.settings(guildId),
      KEYS.changes(guildId),
      expectedVersion,
      JSON.stringify(compactSettings(settings)),
      JSON.stringify(change),
      KEPT_CHANGES,
    );
    return written === 1;
  }

  async changes(guildId: string, limit: number): Promise<SettingsChange[]> {
    const entries = await this.redis.lrange(KEYS.changes(guildId), 0, limit - 1);
    return entries.map((entry) => JSON.parse(entry) as SettingsChange);
  }

  async reserve(reservation: ImageReservation): Promise<ReservationVerdict> {
    const { guildId, userId, day, images, userLimit, serverLimit } = reservation;
    const [verdict, used, limit] = (await this.redis.eval(
      RESERVE,
      1,
      KEYS.images(day, guildId),
      userId,
      images,
      userLimit ?? '',
      serverLimit ?? '',
      COUNTS_TTL_S,
    )) as [string, number, number];
    if (verdict === 'ok') return { ok: true };
    return { ok: false, quota: verdict === 'user' ? 'user' : 'server', used, limit };
  }

  async giveBack(reservation: Pick<ImageReservation, 'guildId' | 'userId' | 'day' | 'images'>): Promise<void> {
    await this.redis.eval(GIVE_BACK, 1, KEYS.images(reservation.day, reservation.guildId), reservation.userId, reservation.images);
  }

  async usage(guildId: string, userId: string, day: string): Promise<ImageUsage> {
    const [user, server] = await this.redis.hmget(KEYS.images(day, guildId), userId, SERVER_TOTAL);
    return { user: Number(user ?? 0), server: Number(server ?? 0) };
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }
}
