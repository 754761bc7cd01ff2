import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import type { Logger } from 'pino';

// A status file for container health checks (Docker's HEALTHCHECK, compose's healthcheck): the process rewrites it
// every few seconds with what its probe says, and `healthcheck` calls the process healthy only while the file is
// fresh and says so. A lost Discord gateway, a worker cut off from Redis and a stuck event loop all make it unhealthy.

export interface HealthStatus {
  healthy: boolean;
  /** One line for `docker inspect` / `docker compose ps`: what is (not) working. */
  detail: string;
}

interface HealthRecord extends HealthStatus {
  /** When the process wrote it (ms since the epoch). */
  at: number;
}

export const HEALTH_WRITE_INTERVAL_MS = 5_000;
/** Older than this, the file means the process stopped writing (stuck, or gone): three missed writes. */
export const HEALTH_MAX_AGE_MS = 3 * HEALTH_WRITE_INTERVAL_MS + 1_000;

export interface HealthReporter {
  /** Stops writing and removes the file, so a process that is shutting down is not reported healthy. */
  stop(): Promise<void>;
}

/** Writes `probe()` to `path` now and every `intervalMs`; the write is atomic (a checker never reads half a file). */
export function reportHealth(options: { path: string; probe: () => HealthStatus; logger: Logger; intervalMs?: number }): HealthReporter {
  const { path, probe, logger } = options;
  const temporary = `${path}.${process.pid}.tmp`;
  let writing = Promise.resolve();
  let failing = false;
  const write = () => {
    const record: HealthRecord = { ...probe(), at: Date.now() };
    writing = writing
      .then(() => writeFile(temporary, `${JSON.stringify(record)}\n`))
      .then(() => rename(temporary, path))
      .then(
        () => {
          failing = false;
        },
        (error: unknown) => {
          if (!failing) logger.warn({ path, error: String(error) }, 'could not write the health file (HEALTH_FILE)');
          failing = true;
        },
      );
  };
  write();
  const timer = setInterval(write, options.intervalMs ?? HEALTH_WRITE_INTERVAL_MS);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await writing;
      await rm(path, { force: true });
    },
  };
}

/** What the file at `path` says now: healthy only when it is fresh and its probe held. */
export async function readHealth(path: string, now = Date.now()): Promise<HealthStatus> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return { healthy: false, detail: `no health file at ${path} (not started yet, or stopped)` };
  }
  let record: Partial<HealthRecord>;
  try {
    record = JSON.parse(text) as Partial<HealthRecord>;
  } catch {
    return { healthy: false, detail: `the health file ${path} is not JSON` };
  }
  if (typeof record.at !== 'number' || typeof record.healthy !== 'boolean') {
    return { healthy: false, detail: `the health file ${path} has no status` };
  }
  const age = now - record.at;
  if (age > HEALTH_MAX_AGE_MS) {
    return { healthy: false, detail: `the process last reported ${Math.round(age / 1000)} s ago (stuck or gone): ${record.detail ?? ''}` };
  }
  return { healthy: record.healthy, detail: record.detail ?? '' };
}

/** Healthy when every part is; the details joined. */
export function allHealthy(statuses: HealthStatus[]): HealthStatus {
  return { healthy: statuses.every((status) => status.healthy), detail: statuses.map((status) => status.detail).join('; ') };
}
