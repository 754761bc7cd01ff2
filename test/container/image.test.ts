import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BLOCKER_OPTIONS } from '../bot-harness.ts';
import { FakeDiscord, type InteractionHandle } from '../fake-discord/index.ts';
import { containerState, envFileFromExample, eventually, healthcheck, IMAGE, jsonLogs, podman, podmanOk, removeContainers, testSettings } from './podman.ts';

// The image on its own (`docker run`): non-root, its default command (what `npm start` runs) against the fake
// Discord on 127.0.0.1 (host network), its health check, and a graceful `stop`.

const suffix = randomBytes(3).toString('hex');
const botName = `imagine-test-bot-${suffix}`;
const modelsVolume = `imagine-test-models-${suffix}`;
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const STOP_TIMEOUT_S = 20;
const directory = mkdtempSync(join(tmpdir(), 'imagine-image-'));

let fake: FakeDiscord | undefined;
afterAll(async () => {
  await removeContainers([botName]);
  await podman(['volume', 'rm', '--force', modelsVolume]);
  await fake?.close();
  rmSync(directory, { recursive: true, force: true });
});

/** `--env-file` with a .env made from .env.example, as the README's `docker run` has it. */
function environmentArgs(discord: FakeDiscord): string[] {
  const path = join(directory, '.env');
  writeFileSync(path, envFileFromExample({ ...testSettings(discord), SHUTDOWN_TIMEOUT_MS: '300' }));
  return ['--env-file', path];
}

describe('the image', () => {
  it('runs as the unprivileged user node with only the production dependencies', async () => {
    const [user, healthcheckConfig] = (await podmanOk(['image', 'inspect', IMAGE, '--format', '{{.Config.User}}|{{json .Config.Healthcheck}}'])).trim().split('|');
    expect(user).toBe('node');
    expect(healthcheckConfig).toContain('healthcheck');
    const inside = await podmanOk(['run', '--rm', '--network', 'none', IMAGE, 'sh', '-c', 'id -u; id -g; ls node_modules; ls -d dist/src/main.js']);
    const [uid, gid, ...rest] = inside.trim().split('\n');
    expect([uid, gid]).toEqual(['1000', '1000']);
    expect(rest).toContain('discord.js');
    for (const devDependency of ['typescript', 'vitest', 'tsx']) expect(rest).not.toContain(devDependency);
  });

  it('has the Vulkan loader WebGPU needs: without a GPU it is the adapter that is missing, not the loader', async () => {
    const imagine = ['node', 'dist/src/cli/imagine.js', 'a test', '--size', '64x64', '--steps', '1', '--out', '/tmp/test.png'];
    const webgpu = await podman(['run', '--rm', '--network', 'none', '--env', 'EXECUTION_PROVIDER=webgpu', IMAGE, ...imagine]);
    expect(webgpu.code).not.toBe(0);
    expect(webgpu.stderr).toContain('EXECUTION_PROVIDER=webgpu: no GPU adapter was found');
    const cpu = await podman(['run', '--rm', '--network', 'none', IMAGE, ...imagine]);
    expect(cpu.code, cpu.stderr).toBe(0);
  });

  it('answers /imagine, reports healthy once logged in, and on stop tells waiting users and exits 0', async () => {
    fake = await FakeDiscord.start();
    const discord = fake;
    const environment = environmentArgs(discord);

    const deploy = await podman(['run', '--rm', '--network', 'host', ...environment, IMAGE, 'npm', 'run', 'deploy-commands']);
    expect(deploy.code, deploy.stderr).toBe(0);
    expect(discord.guildCommands().map((command) => command.name)).toContain('imagine');

    await podmanOk(['run', '--detach', '--name', botName, '--network', 'host', '--volume', `${modelsVolume}:/app/models`, ...environment, IMAGE]);
    const before = await healthcheck(botName);
    await eventually(async () => (await jsonLogs(botName)).some((line) => line.msg === 'logged in to Discord'), 120_000, 'bot logged in');
    // The health file is written every 5 s; the first write after the login says "connected".
    const health = await eventually(async () => {
      const result = await healthcheck(botName);
      return result.healthy && result;
    }, 15_000, 'healthy');
    expect(before).toMatchObject({ healthy: false, output: expect.stringMatching(/^unhealthy: (no health file|logging in)/) });
    expect(health.output).toMatch(/^healthy: Discord gateway connected/);

    const imagine = (username: string, options: Record<string, string | number>): InteractionHandle =>
      discord.sendCommand({ name: 'imagine', options, user: discord.user(username) });
    const done = imagine('dora', { prompt: 'a lighthouse in a container' });
    const reply = await discord.waitFor(() => discord.originalResponse(done)?.attachments.length && discord.originalResponse(done), 120_000, 'first image');
    expect(reply.attachments[0].data.subarray(0, 8)).toEqual(PNG_SIGNATURE);
    expect(reply.embeds[0]?.fields?.find((field) => field.name === 'Model')?.value).toMatch(/tiny/);

    const blocker = imagine('alice', BLOCKER_OPTIONS);
    await discord.waitFor(() => /Generating/.test(discord.originalResponse(blocker)?.content ?? ''), 60_000, 'blocker running');
    const waiting = [imagine('bob', { prompt: 'bob waits' }), imagine('carol', { prompt: 'carol waits' })];
    await discord.waitFor(() => waiting.every((handle) => /Queued|next/.test(discord.originalResponse(handle)?.content ?? '')), 10_000, 'queued');

    const stopStarted = Date.now();
    await podmanOk(['stop', '--time', String(STOP_TIMEOUT_S), botName], { timeoutMs: (STOP_TIMEOUT_S + 30) * 1000 });
    const stopSeconds = (Date.now() - stopStarted) / 1000;
    expect(await containerState(botName)).toMatchObject({ running: false, exitCode: 0 });
    expect(stopSeconds).toBeLessThan(STOP_TIMEOUT_S);
    for (const handle of [...waiting, blocker]) {
      expect(discord.originalResponse(handle)?.content).toMatch(/🛑 Cancelled: the bot is shutting down\. Please try again in a moment\.$/);
    }
    const logs = await jsonLogs(botName);
    expect(logs.find((line) => line.msg === 'signal received')).toMatchObject({ signal: 'SIGTERM' });
    expect(logs.at(-1)?.msg).toBe('bye');
    expect((await podmanOk(['logs', botName])) + (await podman(['logs', botName])).stderr).not.toContain(discord.botToken);
    expect(discord.internalErrors).toEqual([]);
  });
});
