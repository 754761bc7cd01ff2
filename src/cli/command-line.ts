import { type ParseArgsConfig, parseArgs } from 'node:util';

/** A mistake on the command line: the CLIs print it with a pointer to --help and exit with status 2. */
export class UsageError extends Error {}

/** node:util's parseArgs with positionals allowed; a rejected command line becomes a one-line UsageError. */
export function parseCommandLineArgs<Options extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: Options) {
  try {
    return parseArgs({ args, options, allowPositionals: true });
  } catch (error) {
    throw new UsageError((error as Error).message.replace(/\s*\n\s*/g, ' '));
  }
}
