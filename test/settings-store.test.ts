import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'libsql';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { botConnection } from '../src/queue/bullmq-protocol.ts';
import { RedisSettingsStore } from '../src/settings/redis-store.ts';
import { SETTINGS_FILE, SqliteSettingsStore } from '../src/settings/sqlite-store.ts';
import { changeSettings, quotaDay, quotaResetAt, SettingsStoreError, type SettingsStore } from '../src/settings/store.ts';
import { RedisServer } from './redis-server.ts';

const GUILD = '100000000000000001';
const ALICE = '200000000000000001';
const BOB = '200000000000000002';
const DAY = '2026-12-06';

let redis: RedisServer;
let dataDir: string;
const opened: SettingsStore[] = [];

beforeAll(async () => {
  redis = await RedisServer.start();
});
afterAll(async () => {
  await redis?.dispose();
});
afterEach(async () => {
  for (const store of opened.splice(0)) await store.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

/** Two handles on one store, as two bot processes have: two connections to one Redis, or two to one database file. */
const backends: { name: string; open(): Promise<[SettingsStore, SettingsStore]> }[] = [
  {
    name: 'SQLite file',
    async open() {
      dataDir = mkdtempSync(join(tmpdir(), 'imagine-settings-'));
      const pair: [SettingsStore, SettingsStore] = [SqliteSettingsStore.open(dataDir), SqliteSettingsStore.open(dataDir)];
      opened.push(...pair);
      return pair;
    },
  },
  {
    name: 'Redis',
    async open() {
      const flush = botConnection(redis.url);
      await new Promise((resolve) => flush.once('ready', resolve));
      await flush.flushall();
      flush.disconnect();
      const pair: [RedisSettingsStore, RedisSettingsStore] = [new RedisSettingsStore(botConnection(redis.url)), new RedisSettingsStore(botConnection(redis.url))];
      opened.push(...pair);
      for (const store of pair) expect(await store.checkAll()).toBe(true);
      return pair;
    },
  },
];

describe.each(backends)('settings store: $name', (backend) => {
  it('keeps settings and their changes, newest first, and reads them from another handle', async () => {
    const [first, second] = await backend.open();
    expect(await first.read(GUILD)).toEqual({ settings: {}, version: 0 });
    await changeSettings(first, GUILD, { userId: ALICE, at: 1000 }, () => ({ settings: { maxSteps: 20, bannedWords: ['foo'] }, description: 'max steps set to 20' }));
    await changeSettings(first, GUILD, { userId: BOB, at: 2000 }, (current) => ({ settings: { ...current, defaultCount: 2 }, description: 'default count set to 2' }));
    expect(await second.read(GUILD)).toEqual({ settings: { maxSteps: 20, bannedWords: ['foo'], defaultCount: 2 }, version: 2 });
    expect(await second.changes(GUILD, 5)).toEqual([
      { userId: BOB, at: 2000, description: 'default count set to 2' },
      { userId: ALICE, at: 1000, description: 'max steps set to 20' },
    ]);
    expect(await second.read('100000000000000002')).toEqual({ settings: {}, version: 0 });
  });

  it('loses no change when two processes change the same server at once', async () => {
    const [first, second] = await backend.open();
    const words = Array.from({ length: 20 }, (_, index) => `word${index}`);
    // Each change adds one word to what it read; a lost write would lose a word.
    await Promise.all(
      words.map((word, index) =>
        changeSettings(index % 2 === 0 ? first : second, GUILD, { userId: ALICE, at: index }, (current) => ({
          settings: { ...current, bannedWords: [...(current.bannedWords ?? []), word] },
          description: `added ${word}`,
        })),
      ),
    );
    const stored = await first.read(GUILD);
    expect([...(stored.settings.bannedWords ?? [])].sort()).toEqual([...words].sort());
    expect(stored.version).toBe(words.length);
  });

  it('a version that moved on refuses the write', async () => {
    const [first, second] = await backend.open();
    const change = { userId: ALICE, at: 1, description: 'x' };
    expect(await first.replace(GUILD, 0, { maxSteps: 5 }, change)).toBe(true);
    expect(await second.replace(GUILD, 0, { maxSteps: 9 }, change)).toBe(false);
    expect((await second.read(GUILD)).settings).toEqual({ maxSteps: 5 });
  });

  it('counts quotas atomically across processes: never past the limit, per user and per server, per day', async () => {
    const [first, second] = await backend.open();
    const reservation = { guildId: GUILD, day: DAY, images: 1, userLimit: 3, serverLimit: 5 };
    const verdicts = await Promise.all(Array.from({ length: 8 }, (_, index) => (index % 2 ? first : second).reserve({ ...reservation, userId: ALICE })));
    expect(verdicts.filter((verdict) => verdict.ok)).toHaveLength(3);
    expect(verdicts.find((verdict) => !verdict.ok)).toEqual({ ok: false, quota: 'user', used: 3, limit: 3 });
    expect(await first.reserve({ ...reservation, userId: BOB, images: 2 })).toEqual({ ok: true });
    expect(await second.reserve({ ...reservation, userId: BOB, images: 1 })).toEqual({ ok: false, quota: 'server', used: 5, limit: 5 });
    expect(await first.usage(GUILD, ALICE, DAY)).toEqual({ user: 3, server: 5 });
    await second.giveBack({ guildId: GUILD, userId: ALICE, day: DAY, images: 2 });
    expect(await first.usage(GUILD, ALICE, DAY)).toEqual({ user: 1, server: 3 });
    expect(await first.usage(GUILD, ALICE, '2026-12-07')).toEqual({ user: 0, server: 0 });
    expect(await first.reserve({ ...reservation, userId: ALICE, day: '2026-12-07', images: 3 })).toEqual({ ok: true });
  });
});

describe('a store that cannot be read stops the bot instead of resetting the rules', () => {
  it('SQLite: a file that is not a database', () => {
    dataDir = mkdtempSync(join(tmpdir(), 'imagine-settings-'));
    writeFileSync(join(dataDir, SETTINGS_FILE), 'this is not an SQLite database, just some text that fills a page'.repeat(100));
    expect(() => SqliteSettingsStore.open(dataDir)).toThrow(SettingsStoreError);
    expect(() => SqliteSettingsStore.open(dataDir)).toThrow(new RegExp(`cannot use the settings database ${join(dataDir, SETTINGS_FILE)}`));
  });

  it('SQLite: a server whose stored settings are not settings', async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'imagine-settings-'));
    const store = SqliteSettingsStore.open(dataDir);
    await changeSettings(store, GUILD, { userId: ALICE, at: 1 }, () => ({ settings: { maxSteps: 5 }, description: 'x' }));
    await store.close();
    const db = new Database(join(dataDir, SETTINGS_FILE));
    db.prepare('UPDATE guild_settings SET settings = ?').run('{"maxSteps": "many"}');
    db.close();
    expect(() => SqliteSettingsStore.open(dataDir)).toThrow(`the settings of server ${GUILD} in ${join(dataDir, SETTINGS_FILE)} cannot be read: maxSteps:`);
  });

  it('Redis: a server key holding something else', async () => {
    const connection = botConnection(redis.url);
    await new Promise((resolve) => connection.once('ready', resolve));
    await connection.flushall();
    await connection.hset(`imagine-bot:settings:${GUILD}`, 'version', '3', 'settings', 'not json');
    const store = new RedisSettingsStore(connection);
    opened.push(store);
    await expect(store.checkAll()).rejects.toThrow(/the settings of server 100000000000000001 in Redis .* cannot be read: not JSON/);
    await expect(store.read(GUILD)).rejects.toBeInstanceOf(SettingsStoreError);
  });
});

describe('quota days', () => {
  it('are UTC days that reset at 00:00 UTC', () => {
    const now = Date.UTC(2026, 11, 31, 23, 59, 30);
    expect(quotaDay(now)).toBe('2026-12-31');
    expect(quotaResetAt(now)).toBe(Date.UTC(2027, 0, 1));
  });
});
