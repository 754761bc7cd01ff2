import { config as loadDotenv } from 'dotenv';
import { ConfigError, loadConfig, type BotConfig, type RedisBackendConfig } from './config.ts';
import { startBot, type RunningBot } from './discord/bot.ts';
import { createLogger } from './discord/logger.ts';
import { describeError } from './discord/rest-errors.ts';
import { BullJobQueue } from './queue/bullmq-queue.ts';

// `npm run bot`: the Discord front end alone. It loads no model; jobs go through Redis to `npm run worker` processes.

loadDotenv({ quiet: true });
let config: BotConfig;
let backend: RedisBackendConfig;
try {
  config = loadConfig();
  if (config.backend.kind !== 'bullmq') {
    throw new ConfigError(
      'npm run bot hands its jobs to `npm run worker` processes through Redis: set QUEUE_BACKEND=bullmq and REDIS_URL. ' +
        'For a single machine without Redis, use npm start.',
    );
  }
  backend = config.backend;
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  console.error(error.message);
  process.exit(1);
}
const logger = createLogger(config.logLevel);
process.on('unhandledRejection', (error) => logger.error({ error: describeError(error) }, 'unhandled rejection'));

const queue = new BullJobQueue({ redisUrl: backend.redisUrl, policy: config.generation, ...config.queue, resultTtlMs: backend.resultTtlMs, logger });

let bot: RunningBot | undefined;
let stopping = false;
async function stop(signal: NodeJS.Signals): Promise<void> {
  if (stopping) return;
  stopping = true;
  logger.info({ signal }, 'signal received: running and waiting jobs stay queued for the workers and the next bot');
  await bot?.shutdown();
  logger.info('bye');
  process.exit(0);
}
process.on('SIGINT', (signal) => void stop(signal));
process.on('SIGTERM', (signal) => void stop(signal));

try {
  bot = await startBot({ config, queue, logger });
} catch (error) {
  logger.fatal({ error: describeError(error) }, 'could not log in to Discord');
  await queue.close(0);
  process.exit(1);
}
