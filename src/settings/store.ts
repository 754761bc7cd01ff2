import type { GuildSettings } from './guild-settings.ts';

// What keeps servers' settings and the daily image counts: an embedded database file for a single bot process, Redis
// when several bot processes share the work (QUEUE_BACKEND=bullmq). Every write is atomic in the store itself, so two
// processes changing the same server at once lose neither change.

export interface StoredSettings {
  settings: GuildSettings;
  /** Bumped by every write; 0 for a server that never changed anything. */
  version: number;
}

/** Who changed what, kept beside the settings (and logged). */
export interface SettingsChange {
  userId: string;
  /** Milliseconds since the epoch. */
  at: number;
  /** What changed, in words, e.g. `max steps: 30`. */
  description: string;
}

/** A job's images counted against today's quotas (undefined limit: none). */
export interface ImageReservation {
  guildId: string;
  userId: string;
  /** The UTC day, YYYY-MM-DD. */
  day: string;
  images: number;
  userLimit: number | undefined;
  serverLimit: number | undefined;
}

export type ReservationVerdict = { ok: true } | { ok: false; quota: 'user' | 'server'; used: number; limit: number };

export interface ImageUsage {
  user: number;
  server: number;
}

export interface SettingsStore {
  read(guildId: string): Promise<StoredSettings>;
  /**
   * Writes the settings when the stored version is still `expectedVersion` (and records the change with them);
   * false when another write came first: read again and retry.
   */
  replace(guildId: string, expectedVersion: number, settings: GuildSettings, change: SettingsChange): Promise<boolean>;
  /** The latest changes, newest first. */
  changes(guildId: string, limit: number): Promise<SettingsChange[]>;
  /** Counts the images when both of today's counts stay within their limits; counts nothing otherwise. */
  reserve(reservation: ImageReservation): Promise<ReservationVerdict>;
  /** Gives back images counted for a job that made none (cancelled, failed). */
  giveBack(reservation: Pick<ImageReservation, 'guildId' | 'userId' | 'day' | 'images'>): Promise<void>;
  usage(guildId: string, userId: string, day: string): Promise<ImageUsage>;
  close(): Promise<void>;
}

/** The store cannot be read (a corrupt file, data that is not settings): the bot must not go on with default rules. */
export class SettingsStoreError extends Error {
  override name = 'SettingsStoreError';
}

/** How many changes a store keeps per server. */
export const KEPT_CHANGES = 100;

/** The UTC day of `now` (YYYY-MM-DD): daily quotas count per day and reset at 00:00 UTC. */
export function quotaDay(now: number): string {
  return new Date(now).toISOString().slice(0, 10);
}

/** When the day of `now` ends (00:00 UTC of the next day), in milliseconds since the epoch. */
export function quotaResetAt(now: number): number {
  const date = new Date(now);
  return Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate() + 1);
}

/** Tries of a change that keeps meeting another process's write (each try reads the latest settings again). */
const CHANGE_ATTEMPTS = 50;

/**
 * Reads the server's settings, applies `edit` (which may throw to refuse the change), and writes the result if
 * nothing was written meanwhile, else starts over from the newer settings: concurrent changes are all kept.
 */
export async function changeSettings(
  store: SettingsStore,
  guildId: string,
  by: Omit<SettingsChange, 'description'>,
  edit: (current: GuildSettings) => { settings: GuildSettings; description: string },
): Promise<SettingsChange> {
  for (let attempt = 0; attempt < CHANGE_ATTEMPTS; attempt++) {
    const current = await store.read(guildId);
    const { settings, description } = edit(current.settings);
    const change = { ...by, description };
    if (await store.replace(guildId, current.version, settings, change)) return change;
  }
  throw new SettingsStoreError(`the settings of server ${guildId} kept changing under ${CHANGE_ATTEMPTS} tries to write them`);
}
