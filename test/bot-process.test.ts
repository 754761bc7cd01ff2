import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';
import { deployCommands } from '../src/discord/deploy.ts';
import { BLOCKER_OPTIONS, hasImages } from './bot-harness.ts';
import { FakeDiscord, type InteractionHandle } from './fake-discord/index.ts';
import { entryPoint } from './entry-point.ts';

// An empty working directory, so a developer's .env cannot leak into the test.
const cwd = mkdtempSync(join(tmpdir(), 'imagine-bot-'));

interface Child {
  lines: Record<string, unknown>[];
  stdout: string;
  stderr: string;
  exit: Promise<number | null>;
  kill(signal: NodeJS.Signals): void;
}

function run(script: string, environment: Record<string, string>): Child {
  const child = spawn(process.execPath, [entryPoint(script)], {
    cwd,
    env: { PATH: process.env.PATH ?? '', ...environment },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const result: Child = {
    lines: [],
    stdout: '',
    stderr: '',
    exit: new Promise((resolve) => child.once('exit', (code) => resolve(code))),
    kill: (signal) => child.kill(signal),
  };
  child.stdout.on('data', (chunk: Buffer) => {
    result.stdout += chunk.toString('utf8');
    const lines = result.stdout.split('\n');
    result.lines = lines.filter((line) => line.startsWith('{')).map((line) => JSON.parse(line));
  });
  child.stderr.on('data', (chunk: Buffer) => (result.stderr += chunk.toString('utf8')));
  return result;
}

let fake: FakeDiscord | undefined;
afterEach(async () => {
  await fake?.close();
  fake = undefined;
});

function environmentFor(discord: FakeDiscord): Record<string, string> {
  return {
    DISCORD_TOKEN: discord.botToken,
    DISCORD_APPLICATION_ID: discord.applicationId,
    DISCORD_GUILD_ID: discord.guildId,
    DISCORD_API_URL: discord.apiUrl,
    MODELS_DIR: join(cwd, 'models'),
    SD_MODEL_DIR: 'tiny',
    DATA_DIR: mkdtempSync(join(cwd, 'data-')),
    SIZES: '64x64,512x512',
    DEFAULT_SIZE: '64x64',
    DEFAULT_STEPS: '2',
    MAX_STEPS: '150',
    PROGRESS_EDIT_INTERVAL_MS: '100',
    SHUTDOWN_TIMEOUT_MS: '300',
  };
}

describe('npm start and npm run deploy-commands as processes', () => {
  it('deploys the commands, serves /imagine with the tiny model it was told to use, and on SIGTERM cancels waiting jobs and exits 0', async () => {
    fake = await FakeDiscord.start();
    const discord = fake;
    const environment = environmentFor(discord);

    const deploy = run('src/cli/deploy-commands.ts', environment);
    expect(await deploy.exit).toBe(0);
    expect(deploy.stdout).toContain(`Registered /embeddings, /imagine, /info, /queue, /settings, /tokens in guild ${discord.guildId}.`);
    expect(discord.guildCommands().map((command) => command.name)).toEqual(['embeddings', 'imagine', 'info', 'queue', 'settings', 'tokens']);

    const bot = run('src/main.ts', environment);
    await discord.waitFor(() => bot.lines.some((line) => line.msg === 'model loaded') && bot.lines.some((line) => line.msg === 'logged in to Discord'), 30_000, 'bot up');
    expect(bot.lines.find((line) => line.level === 40 && String(line.msg).startsWith('Serving the tiny test model'))).toBeDefined();

    const imagine = (username: string, options: Record<string, string | number>): InteractionHandle =>
      discord.sendCommand({ name: 'imagine', options, user: discord.user(username) });
    const done = imagine('dora', { prompt: 'before shutdown' });
    await discord.waitFor(() => { const reply = discord.originalResponse(done); return reply && hasImages(reply); }, 10_000, 'first image');

    const blocker = imagine('alice', BLOCKER_OPTIONS);
    await discord.waitFor(() => /Generating/.test(discord.originalResponse(blocker)?.content ?? ''), 10_000, 'blocker running');
    const waiting = [imagine('bob', { prompt: 'bob waits' }), imagine('carol', { prompt: 'carol waits' })];
    await discord.waitFor(() => waiting.every((handle) => /Queued|next/.test(discord.originalResponse(handle)?.content ?? '')), 5_000, 'queued');

    bot.kill('SIGTERM');
    expect(await bot.exit).toBe(0);
    for (const handle of [...waiting, blocker]) {
      const reply = discord.originalResponse(handle);
      expect(reply?.content).toMatch(/🛑 Cancelled: the bot is shutting down\. Please try again in a moment\.$/);
      expect(reply?.components).toEqual([]);
    }
    expect(bot.lines.at(-1)?.msg).toBe('bye');
    expect(bot.stdout + bot.stderr).not.toContain(discord.botToken);
    await discord.waitFor(() => discord.gateway.openConnections === 0, 2_000, 'gateway closed');
  });

  it('refuses to go live without a model, saying how to get one and how to opt in to the tiny model', async () => {
    fake = await FakeDiscord.start();
    const bot = run('src/main.ts', { ...environmentFor(fake), SD_MODEL_DIR: '' });
    expect(await bot.exit).toBe(1);
    const fatal = bot.lines.find((line) => line.level === 60);
    expect(fatal?.msg).toMatch(/^No Stable Diffusion model is installed, so the bot does not start\. Download one with `npm run model:pull -- sd-turbo`/);
    expect(fatal?.msg).toContain('set SD_MODEL_DIR=tiny');
    expect(bot.lines.some((line) => line.msg === 'logged in to Discord')).toBe(false);
    expect(fake.gateway.openConnections).toBe(0);
  });

  it('refuses to start with a configuration error that names the variable', async () => {
    const bot = run('src/main.ts', { DISCORD_APPLICATION_ID: '123', MAX_QUEUE: 'lots' });
    expect(await bot.exit).toBe(1);
    expect(bot.stderr).toContain('DISCORD_TOKEN: is required');
    expect(bot.stderr).toContain('DISCORD_APPLICATION_ID: must be a Discord ID');
    expect(bot.stderr).toContain('MAX_QUEUE: must be a number');
  });

  it('after a crash (SIGKILL) takes up the running and the waiting job and delivers them; a gateway close 4004 ends it with exit 1', async () => {
    fake = await FakeDiscord.start();
    const discord = fake;
    const environment = { ...environmentFor(discord), LOG_LEVEL: 'debug' };
    await deployCommands(loadConfig(environment));
    const imagine = (username: string, options: Record<string, string | number>): InteractionHandle =>
      discord.sendCommand({ name: 'imagine', options, user: discord.user(username) });
    const reply = (handle: InteractionHandle) => discord.originalResponse(handle);

    const first = run('src/main.ts', environment);
    await discord.waitFor(() => first.lines.some((line) => line.msg === 'logged in to Discord'), 30_000, 'first bot up');
    const blocker = imagine('alice', BLOCKER_OPTIONS);
    await discord.waitFor(() => /Generating/.test(reply(blocker)?.content ?? ''), 30_000, 'blocker running');
    const waiting = imagine('bob', { prompt: 'bob waits out a crash', seed: 11 });
    await discord.waitFor(() => /next in the queue/.test(reply(waiting)?.content ?? ''), 10_000, 'bob queued');
    first.kill('SIGKILL');
    expect(await first.exit).toBe(null);

    const second = run('src/main.ts', environment);
    await discord.waitFor(() => second.lines.filter((line) => line.msg === 'taking over a job another bot process queued').length === 2, 30_000, 'jobs taken up');
    const cancelId = JSON.stringify(reply(blocker)?.components).match(/imagine:cancel:[\w-]+/)?.[0];
    expect(cancelId).toBeDefined();
    discord.clickButton({ messageId: reply(blocker)!.id, customId: cancelId!, user: discord.user('alice') });
    const delivered = await discord.waitFor(() => { const posted = reply(waiting); return posted && hasImages(posted) && posted; }, 30_000, 'bob’s image');
    expect(delivered.attachments.map((attachment) => attachment.filename)).toEqual(['imagine-11-1.png']);
    expect(delivered.components.map((row) => JSON.stringify(row))).not.toContain('imagine:cancel');
    await discord.waitFor(() => /🛑 Cancelled\.$/.test(reply(blocker)?.content ?? ''), 10_000, 'blocker cancelled');
    expect(discord.channelMessages().filter((message) => message.origin.kind === 'channel')).toEqual([]);

    discord.dropGatewayConnections(4004);
    expect(await second.exit).toBe(1);
    const fatal = second.lines.find((line) => line.level === 60);
    expect(String(fatal?.msg)).toContain('Set DISCORD_TOKEN to the bot’s current token');
    expect(second.stdout + second.stderr).not.toContain(discord.botToken);
  });

  it('refuses to start when DATA_DIR cannot hold the job journal, naming it', async () => {
    fake = await FakeDiscord.start();
    const notAFolder = join(cwd, 'journal-is-a-file');
    writeFileSync(notAFolder, 'x');
    const bot = run('src/main.ts', { ...environmentFor(fake), DATA_DIR: notAFolder });
    expect(await bot.exit).toBe(1);
    expect(bot.stderr).toContain(`DATA_DIR: cannot keep the job journal in ${notAFolder}`);
  });

  it('refuses to start on a settings database it cannot read, naming the file, instead of dropping the servers’ rules', async () => {
    fake = await FakeDiscord.start();
    const environment = environmentFor(fake);
    const database = join(environment.DATA_DIR, 'settings.db');
    writeFileSync(database, 'not a database: a file a disk error or a bad copy left behind. '.repeat(100));
    const bot = run('src/main.ts', environment);
    expect(await bot.exit).toBe(1);
    const fatal = bot.lines.find((line) => line.level === 60);
    expect(fatal?.msg).toMatch(new RegExp(`^the servers' settings cannot be read, so the bot does not start: cannot use the settings database ${database}: `));
    expect(fake.requests.filter((request) => request.route === '/gateway/bot')).toEqual([]);
  });
});
