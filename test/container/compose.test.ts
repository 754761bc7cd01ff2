import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { BLOCKER_OPTIONS } from '../bot-harness.ts';
import { FakeDiscord, type InteractionHandle } from '../fake-discord/index.ts';
import { command, containerState, envFileFromExample, eventually, healthcheck, IMAGE, jsonLogs, podman, podmanOk, REDIS_IMAGE, removeContainers, testSettings } from './podman.ts';

// compose.yaml as it is, run by podman-compose: Redis on the private network, the bot, two workers; a job goes
// through Redis, and a worker killed in the middle of a job costs the user nothing but time.

const root = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const project = `imaginetest${randomBytes(3).toString('hex')}`;
const directory = mkdtempSync(join(tmpdir(), 'imagine-compose-'));
const container = (service: string, index = 1) => `${project}_${service}_${index}`;
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

const compose = (args: string[]) => command('podman-compose', ['--project-name', project, '--file', 'compose.yaml', ...args], { cwd: directory, timeoutMs: 300_000 });

let fake: FakeDiscord | undefined;
afterAll(async () => {
  // podman-compose 1.0.3's down leaves the containers' anonymous volumes (the image's VOLUMEs) and the networks behind.
  const containers = (await podman(['ps', '--all', '--quiet', '--filter', `label=io.podman.compose.project=${project}`])).stdout.split('\n').filter(Boolean);
  await removeContainers(containers);
  await compose(['down', '--volumes']);
  await podman(['network', 'rm', '--force', `${project}_default`, `${project}_backend`]);
  await fake?.close();
  rmSync(directory, { recursive: true, force: true });
});

describe('compose.yaml', () => {
  it('runs Redis, the bot and two workers; a job goes through Redis, and one whose worker is killed is delivered once', async () => {
    // The containers reach the host (and the fake) through the bridge's gateway.
    fake = await FakeDiscord.start({ listenHost: '0.0.0.0', publicHost: 'host.containers.internal' });
    const discord = fake;
    copyFileSync(join(root, 'compose.yaml'), join(directory, 'compose.yaml'));
    const environment: Record<string, string> = {
      IMAGINE_BOT_IMAGE: IMAGE,
      REDIS_IMAGE,
      REDIS_PASSWORD: randomBytes(16).toString('hex'),
      WORKERS: '2',
      ...testSettings(discord),
      STALLED_JOB_TIMEOUT_MS: '3000',
    };
    writeFileSync(join(directory, '.env'), envFileFromExample(environment));

    const up = await compose(['up', '--detach']);
    expect(up.code, up.stderr).toBe(0);
    const workers = [container('worker', 1), container('worker', 2)];
    const bot = container('bot');
    const redis = container('redis');

    // Health checks as compose would run them: Redis answers, the bot is on the gateway, both workers beat.
    for (const name of [redis, bot, ...workers]) {
      await eventually(async () => (await healthcheck(name)).healthy, 180_000, `${name} healthy`);
    }
    expect((await healthcheck(bot)).output).toMatch(/^healthy: Discord gateway connected/);
    for (const name of workers) expect((await healthcheck(name)).output).toMatch(/^healthy: heartbeat reached Redis \d+ s ago; model tiny\S* loaded$/);
    const backend = JSON.parse(await podmanOk(['network', 'inspect', `${project}_backend`])) as { internal: boolean }[];
    expect(backend[0].internal).toBe(true);
    expect((await podmanOk(['inspect', redis, '--format', '{{json .NetworkSettings.Networks}}']))).not.toContain(`${project}_default`);
    const redisCli = (args: string[]) => podmanOk(['exec', redis, 'redis-cli', ...args]);
    expect((await redisCli(['CONFIG', 'GET', 'appendonly'])).trim().split('\n')).toEqual(['appendonly', 'yes']);
    expect((await podman(['exec', '--env', 'REDISCLI_AUTH=wrong', redis, 'redis-cli', 'PING'])).stdout).not.toContain('PONG');

    const deploy = await podman(['exec', bot, 'npm', 'run', 'deploy-commands']);
    expect(deploy.code, deploy.stderr).toBe(0);

    const imagine = (username: string, options: Record<string, string | number>): InteractionHandle =>
      discord.sendCommand({ name: 'imagine', options, user: discord.user(username) });
    const finalReply = (handle: InteractionHandle, timeoutMs: number) =>
      discord.waitFor(() => {
        const reply = discord.originalResponse(handle);
        return reply?.attachments.length && !JSON.stringify(reply.components).includes('imagine:cancel:') && reply;
      }, timeoutMs, 'final reply');
    // The workers' logs name a job by its BullMQ id, made from the interaction's.
    const workersThatLogged = async (message: string, handle: InteractionHandle) => {
      const logs = await Promise.all(workers.map((name) => jsonLogs(name)));
      return workers.filter((_, index) => logs[index].some((line) => line.msg === message && line.jobId === `job-${handle.id}`));
    };

    const first = imagine('dora', { prompt: 'through redis' });
    const reply = await finalReply(first, 120_000);
    expect(reply.attachments[0].data.subarray(0, 8)).toEqual(PNG_SIGNATURE);
    expect(await workersThatLogged('job completed', first)).toHaveLength(1);

    // A long job; the worker that runs it is killed (SIGKILL, no goodbye), the other one takes it over.
    const long = imagine('alice', BLOCKER_OPTIONS);
    await discord.waitFor(() => /Generating/.test(discord.originalResponse(long)?.content ?? ''), 60_000, 'long job running');
    const [running] = await eventually(async () => {
      const started = await workersThatLogged('job started', long);
      return started.length > 0 && started;
    }, 10_000, 'the worker running the long job');
    await podmanOk(['kill', '--signal', 'KILL', running]);
    const survivor = workers.find((name) => name !== running)!;

    const delivered = await finalReply(long, 240_000);
    expect(delivered.attachments).toHaveLength(BLOCKER_OPTIONS.count);
    expect(await workersThatLogged('job completed', long)).toEqual([survivor]);
    const postedImages = discord.messages.filter((message) => message.attachments.length > 0 && !message.deletedAt);
    expect(postedImages.filter((message) => message.id === delivered.id)).toHaveLength(1);
    expect(postedImages).toHaveLength(2);
    expect(discord.followups(long)).toEqual([]);
    expect((await containerState(survivor)).running).toBe(true);

    // A crash (node dies on its own, unlike a kill from outside) is what the restart policy is for.
    await podmanOk(['exec', survivor, 'sh', '-c', 'for p in /proc/[0-9]*; do case "$(tr "\\0" " " < $p/cmdline)" in node\\ *) kill -9 "${p#/proc/}";; esac; done']);
    await eventually(async () => (await containerState(survivor)).restarts >= 1 && (await healthcheck(survivor)).healthy, 120_000, 'the crashed worker back');
    const again = imagine('erin', { prompt: 'after the crash' });
    expect((await finalReply(again, 120_000)).attachments).toHaveLength(1);
    expect(discord.internalErrors).toEqual([]);
  });
});
