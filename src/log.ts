import { pino, type DestinationStream, type Logger } from 'pino';

/** Paths that may hold a token if a whole config or request object is ever logged. */
const SECRET_PATHS = [
  'token',
  '*.token',
  'discord.token',
  'config.discord.token',
  'DISCORD_TOKEN',
  '*.DISCORD_TOKEN',
  'authorization',
  'headers.authorization',
  '*.headers.authorization',
];

// Logging for every process role (bot, worker, CLI): pino JSON lines with secrets redacted, and a log-safe summary of
// any error. Neutral on purpose: a GPU worker logs through this without loading discord.js.

/** JSON lines, by default on stdout and written synchronously so nothing is lost when the process exits after a signal. */
export function createLogger(level: string, destination: DestinationStream = pino.destination({ dest: 1, sync: true })): Logger {
  return pino({ level, redact: { paths: SECRET_PATHS, censor: '[redacted]' }, base: { name: 'imagine-bot' } }, destination);
}

/** Fields of errors worth logging beyond name and message: HTTP and Discord API errors carry these. */
const ERROR_FIELDS = ['status', 'code', 'method', 'retryAfter'] as const;

/**
 * A log-safe summary of an error: name, message and the fields above. Nothing else is copied, so the URL of a
 * failed REST call (it holds the interaction token) and request bodies stay out of the log.
 */
export function describeError(error: unknown): Record<string, unknown> {
  if (!(error instanceof Error)) return { message: String(error) };
  const summary: Record<string, unknown> = { name: error.name, message: error.message };
  for (const field of ERROR_FIELDS) {
    const value = (error as unknown as Record<string, unknown>)[field];
    if (typeof value === 'string' || typeof value === 'number') summary[field] = value;
  }
  return summary;
}
