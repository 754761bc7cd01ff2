import { config as loadDotenv } from 'dotenv';
import { ConfigError, loadWorkerConfig, type WorkerConfig } from './config.ts';
import { createLogger } from './discord/logger.ts';
import { describeError } from './discord/rest-errors.ts';
import { resolveModelDir, TINY_MODEL_NOTICE } from './models/default-model.ts';
import { autoPull, FIRST_RUN_HELP } from './models/first-run.ts';
import { ModelCatalog } from './models/catalog.ts';
import { ModelSwitcher } from './worker/model-switcher.ts';
import { RemoteWorker } from './worker/remote-worker.ts';

// `npm run worker`: one per GPU, on any machine that reaches Redis. Loads the model once and runs jobs one at a time.

loadDotenv({ quiet: true });
let config: WorkerConfig;
try {
  config = loadWorkerConfig();
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
const worker = new RemoteWorker({ redisUrl: config.redisUrl, generator: pipeline, catalog, stalledJobTimeoutMs: config.stalledJobTimeoutMs, logger });

let stopping = false;
async function stop(signal: NodeJS.Signals | undefined, code: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  if (signal) logger.info({ signal }, 'signal received: finishing the running job, or handing it back to the queue');
  await worker.close(config.shutdownTimeoutMs);
  await pipeline.dispose();
  logger.info('bye');
  process.exit(code);
}
process.on('SIGINT', (signal) => void stop(signal, 0));
process.on('SIGTERM', (signal) => void stop(signal, 0));

const loadStarted = performance.now();
try {
  const model = await worker.ready;
  logger.info({ model: model.name, native: `${model.nativeWidth}x${model.nativeHeight}`, loadMs: Math.round(performance.now() - loadStarted) }, 'model loaded');
} catch (error) {
  logger.fatal({ error: describeError(error) }, 'the model failed to load: this worker takes no jobs');
  await stop(undefined, 1);
}
