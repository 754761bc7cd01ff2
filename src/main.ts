import { config as loadDotenv } from 'dotenv';
import { ConfigError, loadConfig, type BotConfig } from './config.ts';
import { startBot, type RunningBot } from './discord/bot.ts';
import { createLogger } from './discord/logger.ts';
import { describeError } from './discord/rest-errors.ts';
import { BullJobQueue } from './queue/bullmq-queue.ts';
import { LocalJobQueue } from './queue/local-queue.ts';
import type { JobQueue } from './queue/types.ts';
import { resolveModelDir, TINY_MODEL_NOTICE } from './models/default-model.ts';
import { autoPull, FIRST_RUN_HELP } from './models/first-run.ts';
import { ModelCatalog } from './models/catalog.ts';
import { ModelSwitcher } from './worker/model-switcher.ts';
import { RemoteWorker } from './worker/remote-worker.ts';

// The all-in-one bot: Discord front end, job queue and the pipeline's worker thread in one process.

loadDotenv({ quiet: true });
let config: BotConfig;
try {
  config = loadConfig();
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  console.error(error.message);
  process.exit(1);
}
const logger = createLogger(config.logLevel);
process.on('unhandledRejection', (error) => logger.error({ error: describeError(error) }, 'unhandled rejection'));

let catalog: ModelCatalog;
try {
  const pulled = config.model.dir === undefined ? await autoPull({ preset: config.model.autoPull }) : undefined;
  const model = await resolveModelDir(config.model.dir ?? pulled);
  if (model.notice) logger.warn(model.notice === TINY_MODEL_NOTICE ? FIRST_RUN_HELP : model.notice);
  // The default model, and every installed one a job may name (one is in memory at a time).
  catalog = await ModelCatalog.load(model.dir);
} catch (error) {
  logger.fatal({ error: describeError(error) }, 'no usable model');
  process.exit(1);
}
const pipeline = new ModelSwitcher({ catalog, executionProvider: config.model.executionProvider });
const loadStarted = performance.now();
pipeline.ready.then(
  (model) => logger.info({ model: model.name, native: `${model.nativeWidth}x${model.nativeHeight}`, loadMs: Math.round(performance.now() - loadStarted) }, 'model loaded'),
  (error: unknown) => logger.error({ error: describeError(error) }, 'the default model failed to load: jobs that need it are answered with this error'),
);
const backend = config.backend;
const queue: JobQueue =
  backend.kind === 'local'
    ? new LocalJobQueue({ generator: pipeline, catalog, policy: config.generation, ...config.queue })
    : new BullJobQueue({ redisUrl: backend.redisUrl, policy: config.generation, ...config.queue, resultTtlMs: backend.resultTtlMs, logger });
// With QUEUE_BACKEND=bullmq this process is also one worker; `npm run worker` adds more on other machines.
const worker =
  backend.kind === 'bullmq'
    ? new RemoteWorker({ redisUrl: backend.redisUrl, generator: pipeline, catalog, stalledJobTimeoutMs: backend.stalledJobTimeoutMs, logger })
    : undefined;

let bot: RunningBot | undefined;
let stopping = false;
async function stop(signal: NodeJS.Signals): Promise<void> {
  if (stopping) return;
  stopping = true;
  logger.info({ signal }, 'signal received');
  await bot?.shutdown();
  await worker?.close(config.timing.shutdownTimeoutMs);
  await pipeline.dispose();
  logger.info('bye');
  process.exit(0);
}
process.on('SIGINT', (signal) => void stop(signal));
process.on('SIGTERM', (signal) => void stop(signal));

try {
  bot = await startBot({ config, queue, logger });
} catch (error) {
  logger.fatal({ error: describeError(error) }, 'could not log in to Discord');
  await worker?.close(0);
  await pipeline.dispose();
  process.exit(1);
}
