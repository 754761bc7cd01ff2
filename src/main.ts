import { acceptNoArguments, ENVIRONMENT_NOTE } from './cli/command-line.ts';
import { loadConfig } from './config.ts';
import { LOGGING_IN, startBot, type RunningBot } from './discord/bot.ts';
import { allHealthy } from './health/health-file.ts';
import { describeError } from './log.ts';
import { BullJobQueue } from './queue/bullmq-queue.ts';
import { LocalJobQueue } from './queue/local-queue.ts';
import type { JobQueue } from './queue/types.ts';
import { loadConfigOrExit, loadModelCatalogOrExit, openJournalOrExit, openSettingsStoreOrExit, resolveUpscalerOrExit, startHealthReport, startLogger } from './startup.ts';
import { ModelSwitcher } from './worker/model-switcher.ts';
import { RemoteWorker } from './worker/remote-worker.ts';

acceptNoArguments({
  name: 'start',
  command: 'npm start',
  usage: '',
  description:
    "The whole bot in one process: the Discord client, the job queue and the model in the pipeline's worker thread\n" +
    '(with QUEUE_BACKEND=bullmq, a bot and one worker over Redis). It needs a model: SD_MODEL_DIR, the only one in\n' +
    'models/, or SD_MODEL_DIR=tiny for the generated test model. SIGTERM or Ctrl+C stops it cleanly.',
  flags: {},
  notes: [ENVIRONMENT_NOTE],
});

const config = loadConfigOrExit(loadConfig);
const journal = config.backend.kind === 'local' ? openJournalOrExit(config.backend.dataDir) : undefined;
const logger = startLogger(config.logLevel);
const settings = await openSettingsStoreOrExit(config, logger);
const catalog = await loadModelCatalogOrExit(config.model, logger);
const upscaler = await resolveUpscalerOrExit(config.model.upscaler, logger);
const pipeline = new ModelSwitcher({ catalog, executionProvider: config.model.executionProvider, upscaler, safetyChecker: config.model.safetyChecker });
const safetyChecked = config.model.safetyChecker !== undefined;
const loadStarted = performance.now();
pipeline.ready.then(
  (model) => logger.info({ model: model.name, native: `${model.nativeWidth}x${model.nativeHeight}`, loadMs: Math.round(performance.now() - loadStarted) }, 'model loaded'),
  (error: unknown) => logger.error({ error: describeError(error) }, 'the default model failed to load: jobs that need it are answered with this error'),
);
const backend = config.backend;
const queue: JobQueue =
  backend.kind === 'local'
    ? new LocalJobQueue({ generator: pipeline, catalog, policy: config.generation, ...config.queue, journal, executionProvider: config.model.executionProvider, safetyChecked, logger })
    : new BullJobQueue({ redisUrl: backend.redisUrl, policy: config.generation, ...config.queue, resultTtlMs: backend.resultTtlMs, logger });
// With QUEUE_BACKEND=bullmq this process is also one worker; `npm run worker` adds more on other machines.
const worker =
  backend.kind === 'bullmq'
    ? new RemoteWorker({ redisUrl: backend.redisUrl, generator: pipeline, catalog, stalledJobTimeoutMs: backend.stalledJobTimeoutMs, executionProvider: config.model.executionProvider, safetyChecked, logger })
    : undefined;

let bot: RunningBot | undefined;
const health = startHealthReport(config.healthFile, logger, () => allHealthy([bot?.health() ?? LOGGING_IN, ...(worker ? [worker.health()] : [])]));

let stopping = false;
async function stop(signal: NodeJS.Signals): Promise<void> {
  if (stopping) return;
  stopping = true;
  logger.info({ signal }, 'signal received');
  await health?.stop();
  await bot?.shutdown();
  await worker?.close(config.timing.shutdownTimeoutMs);
  await pipeline.dispose();
  logger.info('bye');
  process.exit(0);
}
process.on('SIGINT', (signal) => void stop(signal));
process.on('SIGTERM', (signal) => void stop(signal));

try {
  // Jobs are not cancelled: they stay queued (in the local queue's journal, or in Redis) for the restarted bot.
  bot = await startBot({ config, queue, settings, logger, onGatewayLost: () => process.exit(1) });
} catch (error) {
  logger.fatal({ error: describeError(error) }, 'could not log in to Discord');
  await worker?.close(0);
  await pipeline.dispose();
  process.exit(1);
}
