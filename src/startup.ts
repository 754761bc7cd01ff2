import { config as loadDotenv } from 'dotenv';
import type { Logger } from 'pino';
import { ConfigError, type BotConfig } from './config.ts';
import { reportHealth, type HealthReporter, type HealthStatus } from './health/health-file.ts';
import { createLogger, describeError } from './log.ts';
import { ModelCatalog } from './models/catalog.ts';
import { resolveModelDir } from './models/default-model.ts';
import { autoPull, noModelHelp } from './models/first-run.ts';
import { defaultModelsDir, listInstalledModels } from './models/installed.ts';
import { resolveUpscaler } from './models/upscalers.ts';
import { botConnection } from './queue/bullmq-protocol.ts';
import { JobJournal } from './queue/job-journal.ts';
import { RedisSettingsStore } from './settings/redis-store.ts';
import { SqliteSettingsStore } from './settings/sqlite-store.ts';
import { SettingsStoreError, type SettingsStore } from './settings/store.ts';

// What every process role (npm start, npm run bot, npm run worker) does before its own work.

/** Reads .env, validates it with `load`, and exits 1 naming every wrong variable. */
export function loadConfigOrExit<T>(load: () => T): T {
  loadDotenv({ quiet: true });
  try {
    return load();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(error.message);
    process.exit(1);
  }
}

/** The local queue's journal in DATA_DIR; exits 1 naming DATA_DIR when it cannot be kept there. */
export function openJournalOrExit(dataDir: string): JobJournal {
  try {
    return new JobJournal(dataDir);
  } catch (error) {
    console.error(`Invalid configuration (check .env):\n  DATA_DIR: cannot keep the job journal in ${dataDir}: ${(error as Error).message}`);
    process.exit(1);
  }
}

export function startLogger(level: BotConfig['logLevel']): Logger {
  const logger = createLogger(level);
  process.on('unhandledRejection', (error) => logger.error({ error: describeError(error) }, 'unhandled rejection'));
  return logger;
}

/**
 * The default model (SD_MODEL_DIR, else AUTO_PULL's preset, else the only installed one) and every installed model a
 * job may name. Exits 1 when there is no usable model, or none is chosen: a bot never serves the tiny test model's
 * noise unless the operator asks for it (SD_MODEL_DIR=tiny).
 */
export async function loadModelCatalogOrExit(model: BotConfig['model'], logger: Logger): Promise<ModelCatalog> {
  let catalog: ModelCatalog;
  try {
    const pulled = model.dir === undefined ? await autoPull({ preset: model.autoPull }) : undefined;
    const resolved = await resolveModelDir(model.dir ?? pulled);
    if (resolved.notice) {
      logger.fatal(noModelHelp((await listInstalledModels()).map((installed) => installed.name)));
      process.exit(1);
    }
    catalog = await ModelCatalog.load(resolved.dir);
  } catch (error) {
    logger.fatal({ error: describeError(error) }, 'no usable model');
    process.exit(1);
  }
  if (catalog.resolve(undefined).info.isTiny) logger.warn('Serving the tiny test model (SD_MODEL_DIR=tiny): it draws noise, not pictures.');
  return catalog;
}

/** The Upscale buttons' upscaler (UPSCALER, else the only one installed), or undefined for Lanczos; exits when UPSCALER names none. */
export async function resolveUpscalerOrExit(choice: string | undefined, logger: Logger): Promise<{ name: string; file: string } | undefined> {
  try {
    const upscaler = await resolveUpscaler(choice, defaultModelsDir());
    if (upscaler) logger.info({ upscaler: upscaler.name }, 'upscaler found');
    else logger.info('no upscaler: the Upscale buttons resize with Lanczos (npm run model:pull -- real-esrgan-x4 installs one)');
    return upscaler && { name: upscaler.name, file: upscaler.file };
  } catch (error) {
    logger.fatal({ error: describeError(error) }, 'UPSCALER names no upscaler');
    process.exit(1);
  }
}

/** With HEALTH_FILE set, keeps that file saying what `probe` says, for the container's health check. */
export function startHealthReport(path: string | undefined, logger: Logger, probe: () => HealthStatus): HealthReporter | undefined {
  return path === undefined ? undefined : reportHealth({ path, probe, logger });
}

/**
 * The servers' settings: DATA_DIR/settings.db for the local backend, Redis (shared by every bot) for bullmq. Exits 1
 * when the stored settings cannot be read: a bot must not go on as if a server had set no rules.
 */
export async function openSettingsStoreOrExit(config: BotConfig, logger: Logger): Promise<SettingsStore> {
  try {
    if (config.backend.kind === 'local') return SqliteSettingsStore.open(config.backend.dataDir);
    const store = new RedisSettingsStore(botConnection(config.backend.redisUrl));
    if (!(await store.checkAll())) logger.warn('Redis is not reachable yet: the servers’ settings are checked as they are read');
    return store;
  } catch (error) {
    if (!(error instanceof SettingsStoreError)) throw error;
    logger.fatal(`the servers' settings cannot be read, so the bot does not start: ${error.message}`);
    process.exit(1);
  }
}
