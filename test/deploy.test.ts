import { execFile, execFileSync, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeDiscord } from './fake-discord/index.ts';

// The deployment a server owner does, on a copy of the project's files as a fresh clone has them: `npm run build`
// (done once for the whole suite by test/global-setup.ts, whose dist/ is copied over), then `npm ci --omit=dev` (no
// TypeScript, no tsx, no vitest), then `npm start` against the fake Discord.

const execFileAsync = promisify(execFile);
const root = fileURLToPath(new URL('..', import.meta.url));
const deployDir = join(mkdtempSync(join(tmpdir(), 'imagine-deploy-')), 'imagine-bot');

async function npm(args: string[], env: Record<string, string> = {}): Promise<string> {
  const { stdout } = await execFileAsync('npm', args, { cwd: deployDir, env: { ...process.env, ...env }, maxBuffer: 16 * 1024 * 1024 });
  return stdout;
}

interface Started {
  lines: Record<string, unknown>[];
  output(): string;
  exit: Promise<number | null>;
  kill(signal: NodeJS.Signals): void;
}

/** `npm start` in a process group of its own, stopped as a terminal or a service manager stops it: the whole group. */
function npmStart(env: Record<string, string>): Started {
  const child = spawn('npm', ['start'], {
    cwd: deployDir,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let stdout = '';
  let stderr = '';
  const started: Started = {
    lines: [],
    output: () => `${stdout}\n${stderr}`,
    // 'close': once every process writing to its output has ended (npm's own exit comes before the bot's).
    exit: new Promise((resolve) => child.once('close', (code) => resolve(code))),
    kill: (signal) => process.kill(-child.pid!, signal),
  };
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString('utf8');
    started.lines = stdout.split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line));
  });
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  return started;
}

let fake: FakeDiscord;
beforeAll(async () => {
  // What a clone has: the tracked files (and new ones not ignored), no node_modules, no dist.
  const files = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '-z'], { cwd: root, encoding: 'utf8' })
    .split('\0')
    .filter((file) => file && file !== 'node_modules' && existsSync(join(root, file)));
  for (const file of files) {
    mkdirSync(dirname(join(deployDir, file)), { recursive: true });
    cpSync(join(root, file), join(deployDir, file));
  }
  cpSync(join(root, 'dist'), join(deployDir, 'dist'), { recursive: true });
  await npm(['ci', '--omit=dev', '--prefer-offline', '--no-audit', '--no-fund']);
  fake = await FakeDiscord.start();
}, 240_000);
afterAll(async () => {
  await fake?.close();
  rmSync(dirname(deployDir), { recursive: true, force: true });
});

describe('a production install: npm run build, npm ci --omit=dev, npm start', { timeout: 60_000 }, () => {
  it('has no development tools installed', () => {
    for (const tool of ['tsx', 'typescript', 'vitest']) expect(existsSync(join(deployDir, 'node_modules', tool))).toBe(false);
    expect(existsSync(join(deployDir, 'dist', 'src', 'main.js'))).toBe(true);
  });

  it('refuses to go live without a model, saying how to get one', async () => {
    const bot = npmStart({ DISCORD_TOKEN: fake.botToken, DISCORD_APPLICATION_ID: fake.applicationId, DISCORD_API_URL: fake.apiUrl });
    expect(await bot.exit).toBe(1);
    expect(bot.lines.find((line) => line.level === 60)?.msg).toMatch(/^No Stable Diffusion model is installed, so the bot does not start\. Download one with `npm run model:pull -- sd-turbo`/);
  });

  it('registers /imagine, answers it with an image from the tiny model, and stops cleanly on SIGTERM', async () => {
    const environment = {
      DISCORD_TOKEN: fake.botToken,
      DISCORD_APPLICATION_ID: fake.applicationId,
      DISCORD_GUILD_ID: fake.guildId,
      DISCORD_API_URL: fake.apiUrl,
      SD_MODEL_DIR: 'tiny',
      DEFAULT_SIZE: '64x64',
      SIZES: '64x64',
      DEFAULT_STEPS: '2',
    };
    expect(await npm(['run', 'deploy-commands'], environment)).toMatch(new RegExp(`Registered (/\\w+, )*/imagine(, /\\w+)* in guild ${fake.guildId}\\.`));
    const bot = npmStart(environment);
    try {
      await fake.waitFor(() => bot.lines.some((line) => line.msg === 'logged in to Discord'), 30_000, `bot up:\n${bot.output()}`);
      const command = fake.sendCommand({ name: 'imagine', options: { prompt: 'a dog wearing hat' }, user: fake.user('owner') });
      const reply = await fake.waitFor(() => fake.originalResponse(command)?.attachments[0] && fake.originalResponse(command), 30_000, 'the image');
      expect(reply.attachments[0].filename).toMatch(/\.png$/);
      expect(reply.embeds[0]?.description).toBe('a dog wearing hat');
    } finally {
      bot.kill('SIGTERM');
    }
    await bot.exit;
    expect(bot.lines.at(-1)?.msg).toBe('bye');
  });
});
