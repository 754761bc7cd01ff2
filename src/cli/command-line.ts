import { parseArgs } from 'node:util';
import { printable } from '../models/printable.ts';

/** A mistake on the command line: the CLIs print it on one line with a pointer to --help and exit with status 2. */
export class UsageError extends Error {}

/** One flag as --help describes it: what it takes, what it does, and its default (in words, when it has one). */
export interface Flag {
  type: 'string' | 'boolean';
  /** A string flag that may be given several times (its value is then a list). */
  multiple?: boolean;
  /** The value's name in --help, e.g. N, WxH, FILE. */
  value?: string;
  short?: string;
  help: string;
  /** Shown as "(default: ...)"; the command applies it itself (it often depends on the model). */
  default?: string;
}

export interface CommandSpec<Flags extends Record<string, Flag>> {
  /** How its messages start, e.g. `imagine: ...`. */
  name: string;
  /** What follows the command in the usage line, e.g. `-- "<prompt>" [options]`. */
  usage: string;
  /** The command as users type it, e.g. `npm run imagine`. */
  command: string;
  description: string;
  flags: Flags;
  /** Lines after the flags (environment variables, notes). */
  notes?: string[];
}

type Values<Flags extends Record<string, Flag>> = {
  [Name in keyof Flags]?: Flags[Name]['type'] extends 'boolean' ? boolean : Flags[Name]['multiple'] extends true ? string[] : string;
};

/** The flags given (each a string or a boolean, by its type) and the positional arguments. */
export interface CommandLine<Flags extends Record<string, Flag>> {
  values: Values<Flags>;
  positionals: string[];
}

interface ParsedCommandLine<Flags extends Record<string, Flag>> extends CommandLine<Flags> {
  help: boolean;
}

const HELP_FLAG: Flag = { type: 'boolean', short: 'h', help: 'Show this help and exit.' };
const NEGATIVE_NUMBER = /^-\d/;

/** The --help text: usage, what the command does, each flag with its default. */
function helpText<Flags extends Record<string, Flag>>(spec: CommandSpec<Flags>): string {
  const flags = Object.entries({ ...spec.flags, help: HELP_FLAG });
  const names = flags.map(([name, flag]) => `${flag.short ? `-${flag.short}, ` : '    '}--${name}${flag.value ? ` ${flag.value}` : ''}`);
  const width = Math.max(...names.map((name) => name.length));
  const rows = flags.map(([, flag], index) => {
    const repeatable = flag.multiple ? ' Repeatable.' : '';
    return `  ${names[index].padEnd(width)}  ${flag.help}${repeatable}${flag.default === undefined ? '' : ` (default: ${flag.default})`}`;
  });
  return [`Usage: ${spec.command} ${spec.usage}`, '', spec.description, '', 'Options:', ...rows, ...(spec.notes ? ['', ...spec.notes] : [])].join('\n');
}

/**
 * node:util's parseArgs over the spec's flags, positionals allowed. A value that starts like a negative number
 * (`--guidance -1`) is taken as the flag's value, so the command can say what is wrong with it. Throws UsageError
 * on one line.
 */
export function parseCommandLine<Flags extends Record<string, Flag>>(args: string[], spec: CommandSpec<Flags>): ParsedCommandLine<Flags> {
  const options = Object.fromEntries(
    Object.entries({ ...spec.flags, help: HELP_FLAG }).map(([name, flag]) => [
      name,
      { type: flag.type, ...(flag.short ? { short: flag.short } : {}), ...(flag.multiple ? { multiple: true } : {}) },
    ]),
  );
  const joined: string[] = [];
  for (let index = 0; index < args.length; index++) {
    const flag = /^--([\w-]+)$/.exec(args[index])?.[1];
    const takesValue = flag !== undefined && Object.hasOwn(spec.flags, flag) && spec.flags[flag].type === 'string';
    if (takesValue && NEGATIVE_NUMBER.test(args[index + 1] ?? '')) joined.push(`${args[index]}=${args[++index]}`);
    else joined.push(args[index]);
  }
  try {
    const { values, positionals } = parseArgs({ args: joined, options, allowPositionals: true, strict: true });
    const { help, ...rest } = values as Record<string, string | boolean | undefined>;
    return { values: rest as Values<Flags>, positionals, help: help === true };
  } catch (error) {
    throw new UsageError((error as Error).message.replace(/\s*\n\s*/g, ' '));
  }
}

/** Runs a parser of one flag's value and turns what it throws into a UsageError. */
export function usageErrorOf<T>(parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/**
 * Runs a command: --help prints its help and exits 0; otherwise `main` gets the command line, and its status is the
 * exit status. A UsageError prints `name: message (see --help)` and exits 2, an interrupted run (AbortError) exits
 * 130, any other error prints `name: message` and exits 1. Messages may quote what a user or a hub sent, so control
 * characters are shown escaped, never sent to the terminal.
 */
export function runCli<Flags extends Record<string, Flag>>(spec: CommandSpec<Flags>, main: (commandLine: CommandLine<Flags>) => Promise<number>): void {
  const run = async () => {
    const { help, ...commandLine } = parseCommandLine(process.argv.slice(2), spec);
    if (!help) return main(commandLine);
    process.stdout.write(`${helpText(spec)}\n`);
    return 0;
  };
  run().then(
    (code) => process.exit(code),
    (error: Error) => {
      process.stderr.write(`${spec.name}: ${printable(error.message)}${error instanceof UsageError ? ' (see --help)' : ''}\n`);
      process.exit(error instanceof UsageError ? 2 : error.name === 'AbortError' ? 130 : 1);
    },
  );
}

/**
 * For commands configured by the environment alone (npm start, npm run bot, worker, deploy-commands): --help prints
 * the help and exits 0, anything else on the command line is refused with status 2.
 */
export function acceptNoArguments(spec: CommandSpec<Record<string, Flag>>): void {
  try {
    const { positionals, help } = parseCommandLine(process.argv.slice(2), spec);
    if (help) {
      process.stdout.write(`${helpText(spec)}\n`);
      process.exit(0);
    }
    if (positionals.length > 0) throw new UsageError(`takes no arguments, only its environment (got "${positionals[0]}")`);
  } catch (error) {
    process.stderr.write(`${spec.name}: ${printable((error as Error).message)} (see --help)\n`);
    process.exit(2);
  }
}

/** The environment notes of the commands that take their settings from .env. */
export const ENVIRONMENT_NOTE = 'Settings come from the environment or .env: every variable, its default and its limits are in .env.example.';
