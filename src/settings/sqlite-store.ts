import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'libsql';
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

export const SETTINGS_FILE = 'settings.db';
/** Counts of earlier days are kept this long (for a look back), then deleted when the store opens. */
const KEPT_DAYS = 7;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS guild_settings (guild_id TEXT PRIMARY KEY, version INTEGER NOT NULL, settings TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS settings_changes (id INTEGER PRIMARY KEY AUTOINCREMENT, guild_id TEXT NOT NULL, user_id TEXT NOT NULL, at INTEGER NOT NULL, description TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS settings_changes_by_guild ON settings_changes (guild_id, id);
CREATE TABLE IF NOT EXISTS image_counts (day TEXT NOT NULL, guild_id TEXT NOT NULL, user_id TEXT NOT NULL, images INTEGER NOT NULL, PRIMARY KEY (day, guild_id, user_id));
`;

/**
 * The single-process store: an SQLite database file (libSQL, SQLite's open fork, whose npm packages carry prebuilt
 * binaries, so it installs without a compiler or a download) in DATA_DIR. SQLite's rollback journal with full sync:
 * a change is on disk before the moderator is told it was made, a crash leaves the last committed state, and the
 * database is that one file (copy it to back it up while the bot is stopped).
 */
export class SqliteSettingsStore implements SettingsStore {
  private constructor(
    private readonly db: Database.Database,
    readonly path: string,
  ) {}

  /** Opens (creating when absent) DATA_DIR/settings.db and checks every server's settings; throws SettingsStoreError when it cannot be used. */
  static open(dataDir: string): SqliteSettingsStore {
    const path = join(dataDir, SETTINGS_FILE);
    let db: Database.Database | undefined;
    try {
      mkdirSync(dataDir, { recursive: true });
      db = new Database(path);
      db.pragma('busy_timeout = 5000');
      db.pragma('synchronous = FULL');
      const check = Object.values(db.prepare('PRAGMA quick_check').get() as object)[0];
      if (check !== 'ok') throw new Error(`the database is damaged (${String(check)})`);
      db.exec(SCHEMA);
      const store = new SqliteSettingsStore(db, path);
      store.checkAllSettings();
      db.prepare('DELETE FROM image_counts WHERE day < ?').run(new Date(Date.now() - KEPT_DAYS * 86_400_000).toISOString().slice(0, 10));
      return store;
    } catch (error) {
      db?.close();
      throw new SettingsStoreError(`cannot use the settings database ${path}: ${(error as Error).message}`);
    }
  }

  async read(guildId: string): Promise<StoredSettings> {
    const row = this.db.prepare('SELECT version, settings FROM guild_settings WHERE guild_id = ?').get(guildId) as SettingsRow | undefined;
    return row ? this.parseRow(guildId, row) : { settings: {}, version: 0 };
  }

  async replace(guildId: string, expectedVersion: number, settings: GuildSettings, change: SettingsChange): Promise<boolean> {
    const write = this.db.transaction(() => {
      const row = this.db.prepare('SELECT version FROM guild_settings WHERE guild_id = ?').get(guildId) as { version: number } | undefined;
      if ((row?.version ?? 0) !== expectedVersion) return false;
      this.db
        .prepare('INSERT INTO guild_settings (guild_id, version, settings) VALUES (?, ?, ?) ON CONFLICT (guild_id) DO UPDATE SET version = excluded.version, settings = excluded.settings')
        .run(guildId, expectedVersion + 1, JSON.stringify(compactSettings(settings)));
      this.db.prepare('INSERT INTO settings_changes (guild_id, user_id, at, description) VALUES (?, ?, ?, ?)').run(guildId, change.userId, change.at, change.description);
      this.db
        .prepare('DELETE FROM settings_changes WHERE guild_id = ? AND id NOT IN (SELECT id FROM settings_changes WHERE guild_id = ? ORDER BY id DESC LIMIT ?)')
        .run(guildId, guildId, KEPT_CHANGES);
      return true;
    });
    return write.immediate();
  }

  async changes(guildId: string, limit: number): Promise<SettingsChange[]> {
    const rows = this.db.prepare('SELECT user_id, at, description FROM settings_changes WHERE guild_id = ? ORDER BY id DESC LIMIT ?').all(guildId, limit) as {
      user_id: string;
      at: number;
      description: string;
    }[];
    return rows.map((row) => ({ userId: row.user_id, at: row.at, description: row.description }));
  }

  async reserve(reservation: ImageReservation): Promise<ReservationVerdict> {
    const { guildId, userId, day, images, userLimit, serverLimit } = reservation;
    const count = this.db.transaction((): ReservationVerdict => {
      const used = this.counts(guildId, userId, day);
      if (userLimit !== undefined && used.user + images > userLimit) return { ok: false, quota: 'user', used: used.user, limit: userLimit };
      if (serverLimit !== undefined && used.server + images > serverLimit) return { ok: false, quota: 'server', used: used.server, limit: serverLimit };
      this.add(guildId, userId, day, images);
      return { ok: true };
    });
    return count.immediate();
  }

  async giveBack(reservation: Pick<ImageReservation, 'guildId' | 'userId' | 'day' | 'images'>): Promise<void> {
    this.add(reservation.guildId, reservation.userId, reservation.day, -reservation.images);
  }

  async usage(guildId: string, userId: string, day: string): Promise<ImageUsage> {
    return this.counts(guildId, userId, day);
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }

  private add(guildId: string, userId: string, day: string, images: number): void {
    this.db
      .prepare(
        'INSERT INTO image_counts (day, guild_id, user_id, images) VALUES (?, ?, ?, max(?, 0)) ON CONFLICT (day, guild_id, user_id) DO UPDATE SET images = max(images + ?, 0)',
      )
      .run(day, guildId, userId, images, images);
  }

  private counts(guildId: string, userId: string, day: string): ImageUsage {
    const row = this.db
      .prepare('SELECT coalesce(sum(images), 0) AS server, coalesce(sum(CASE WHEN user_id = ? THEN images END), 0) AS user FROM image_counts WHERE day = ? AND guild_id = ?')
      .get(userId, day, guildId) as ImageUsage;
    return { user: Number(row.user), server: Number(row.server) };
  }

  private parseRow(guildId: string, row: SettingsRow): StoredSettings {
    try {
      return { settings: parseGuildSettings(row.settings), version: row.version };
    } catch (error) {
      throw new SettingsStoreError(`the settings of server ${guildId} in ${this.path} cannot be read: ${(error as Error).message}`);
    }
  }

  private checkAllSettings(): void {
    const rows = this.db.prepare('SELECT guild_id, version, settings FROM guild_settings').all() as (SettingsRow & { guild_id: string })[];
    for (const row of rows) this.parseRow(row.guild_id, row);
  }
}

interface SettingsRow {
  version: number;
  settings: string;
}
