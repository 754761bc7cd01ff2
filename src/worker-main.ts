import { acceptNoArguments, ENVIRONMENT_NOTE } from './cli/command-line.ts';
import { loadWorkerConfig } from './config.ts';
import { describeError } from './log.ts';
import { loadConfigOrExit, loadModelCatalogOrExit, resolveUpscalerOrExit, startHealthReport, startLogger } from './startup.ts';
import { ModelSwitcher } from './worker/model-switcher.ts';
import { RemoteWorker } from './worker/remote-worker.ts';

acceptNoArguments({
  name: 'worker',
  command: 'npm run worker',
  usage: '',
  description:
    'One GPU\'s worker for QUEUE_BACKEND=bullmq: takes jobs from Redis (REDIS_URL) one at a time and runs them on its\n' +
    'model (SD_MODEL_DIR, the only one in models/, or tiny for the test model). It holds no Discord token.',
  flags: {},
  notes: [ENVIRONMENT_NOTE],
});

const config = loadConfigOrExit(loadWorkerConfig);
const logger = startLogger(config.logLevel);
const catalog = await loadModelCatalogOrExit(config.model, logger);

const upscaler = await resolveUpscalerOrExit(config.model.upscaler, logger);
const pipeline = new ModelSwitcher({ catalog, executionProvider: config.model.executionProvider, upscaler, safetyChecker: config.model.safetyChecker });
const worker = new RemoteWorker({ redisUrl: config.redisUrl, generator: pipeline, catalog, stalledJobTimeoutMs: config.stalledJobTimeoutMs, executionProvider: config.model.executionProvider, safetyChecked: config.model.safetyChecker !== undefined, logger });

const health = startHealthReport(config.healthFile, logger, () => worker.health());

let stopping = false;
async function stop(signal: NodeJS.Signals | undefined, code: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  await health?.stop();
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
