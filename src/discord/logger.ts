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

/** JSON lines, by default on stdout and written synchronously so nothing is lost when the process exits after a signal. */
export function createLogger(level: string, destination: DestinationStream = pino.destination({ dest: 1, sync: true })): Logger {
  return pino({ level, redact: { paths: SECRET_PATHS, censor: '[redacted]' }, base: { name: 'imagine-bot' } }, destination);
}
