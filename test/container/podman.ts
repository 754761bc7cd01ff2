import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { TEST_ENVIRONMENT } from '../bot-harness.ts';
import type { FakeDiscord } from '../fake-discord/index.ts';

const run = promisify(execFile);

/** What scripts/container-test.sh built and hands over in the environment. */
export const IMAGE = requiredEnvironment('IMAGINE_BOT_IMAGE');
export const REDIS_IMAGE = requiredEnvironment('REDIS_IMAGE');

function requiredEnvironment(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the container tests with scripts/container-test.sh`);
  return value;
}

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end; a non-zero exit is a result, not an error. */
export async function command(file: string, args: string[], options: { cwd?: string; timeoutMs?: number } = {}): Promise<CommandResult> {
  try {
    const { stdout, stderr } = await run(file, args, { cwd: options.cwd, timeout: options.timeoutMs ?? 120_000, maxBuffer: 64 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number | string; stdout?: string; stderr?: string; message: string };
    if (typeof failed.code !== 'number') throw error;
    return { code: failed.code, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
  }
}

export async function podman(args: string[], options: { timeoutMs?: number } = {}): Promise<CommandResult> {
  return command('podman', args, options);
}

/** `podman ...` that must succeed; returns its stdout. */
export async function podmanOk(args: string[], options: { timeoutMs?: number } = {}): Promise<string> {
  const result = await podman(args, options);
  if (result.code !== 0) throw new Error(`podman ${args.join(' ')} exited ${result.code}: ${result.stderr || result.stdout}`);
  return result.stdout;
}

/** The JSON log lines (pino) a container wrote so far. */
export async function jsonLogs(container: string): Promise<Record<string, unknown>[]> {
  const { stdout } = await podman(['logs', container]);
  return stdout
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** Runs the container's health check once, as Docker would on its interval; `output` is what the check printed. */
export async function healthcheck(container: string): Promise<{ healthy: boolean; output: string }> {
  const { code } = await podman(['healthcheck', 'run', container]);
  const health = JSON.parse(await podmanOk(['inspect', container, '--format', '{{json .State.Health}}'])) as { Log?: { Output: string }[] };
  return { healthy: code === 0, output: health.Log?.at(-1)?.Output.trim() ?? '' };
}

export async function containerState(container: string): Promise<{ running: boolean; exitCode: number; restarts: number }> {
  const [running, exitCode, restarts] = (await podmanOk(['inspect', container, '--format', '{{.State.Running}} {{.State.ExitCode}} {{.RestartCount}}'])).trim().split(' ');
  return { running: running === 'true', exitCode: Number(exitCode), restarts: Number(restarts) };
}

/** Removes containers, ignoring ones that are gone. */
export async function removeContainers(names: string[]): Promise<void> {
  if (names.length > 0) await podman(['rm', '--force', '--volumes', '--time', '0', ...names]);
}

/** Polls an asynchronous condition every 250 ms until it returns a truthy value, which it resolves with. */
export async function eventually<T>(condition: () => Promise<T | undefined | null | false>, timeoutMs: number, description: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await condition();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${description}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** The settings a containerized bot needs for the fake Discord, with the tiny model and the test suite's short timings. */
export function testSettings(discord: FakeDiscord): Record<string, string> {
  return {
    DISCORD_TOKEN: discord.botToken,
    DISCORD_APPLICATION_ID: discord.applicationId,
    DISCORD_GUILD_ID: discord.guildId,
    DISCORD_API_URL: discord.apiUrl,
    SD_MODEL_DIR: 'tiny',
    ...TEST_ENVIRONMENT,
  };
}

/** .env as a server owner makes it: .env.example with some values filled in (the rest stay empty) and a few added. */
export function envFileFromExample(values: Record<string, string>): string {
  const remaining = new Map(Object.entries(values));
  const lines = readFileSync(new URL('../../.env.example', import.meta.url), 'utf8')
    .split('\n')
    .map((line) => {
      const name = /^([A-Z0-9_]+)=/.exec(line)?.[1];
      if (name === undefined || !remaining.has(name)) return line;
      const value = remaining.get(name);
      remaining.delete(name);
      return `${name}=${value}`;
    });
  return [...lines, ...[...remaining].map(([name, value]) => `${name}=${value}`)].join('\n') + '\n';
}
