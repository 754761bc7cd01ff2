import { acceptNoArguments, ENVIRONMENT_NOTE } from './cli/command-line.ts';
import { ConfigError, loadConfig, type RedisBackendConfig } from './config.ts';
import { LOGGING_IN, startBot, type RunningBot } from './discord/bot.ts';
import { describeError } from './log.ts';
import { BullJobQueue } from './queue/bullmq-queue.ts';
import { loadConfigOrExit, openSettingsStoreOrExit, startHealthReport, startLogger } from './startup.ts';

acceptNoArguments({
  name: 'bot',
  command: 'npm run bot',
  usage: '',
  description:
    'The Discord front end alone, for QUEUE_BACKEND=bullmq: it loads no model and hands the jobs through Redis\n' +
    '(REDIS_URL) to `npm run worker` processes.',
  flags: {},
  notes: [ENVIRONMENT_NOTE],
});

const config = loadConfigOrExit(loadConfig);
const backend = loadConfigOrExit((): RedisBackendConfig => {
  if (config.backend.kind !== 'bullmq') {
    throw new ConfigError(
      'npm run bot hands its jobs to `npm run worker` processes through Redis: set QUEUE_BACKEND=bullmq and REDIS_URL. ' +
        'For a single machine without Redis, use npm start.',
    );
  }
  return config.backend;
});
const logger = startLogger(config.logLevel);
const settings = await openSettingsStoreOrExit(config, logger);

const queue = new BullJobQueue({ redisUrl: backend.redisUrl, policy: config.generation, ...config.queue, resultTtlMs: backend.resultTtlMs, logger });

let bot: RunningBot | undefined;
const health = startHealthReport(config.healthFile, logger, () => bot?.health() ?? LOGGING_IN);

let stopping = false;
async function stop(signal: NodeJS.Signals): Promise<void> {
  if (stopping) return;
  stopping = true;
  logger.info({ signal }, 'signal received: running and waiting jobs stay queued for the workers and the next bot');
  await health?.stop();
  await bot?.shutdown();
  logger.info('bye');
  process.exit(0);
}
process.on('SIGINT', (signal) => void stop(signal));
process.on('SIGTERM', (signal) => void stop(signal));

try {
  // Jobs are not cancelled: they stay queued in Redis for the restarted bot.
  bot = await startBot({ config, queue, settings, logger, onGatewayLost: () => process.exit(1) });
} catch (error) {
  logger.fatal({ error: describeError(error) }, 'could not log in to Discord');
  await queue.close(0);
  process.exit(1);
}
