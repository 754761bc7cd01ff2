import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Events } from 'discord.js';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { HEALTH_MAX_AGE_MS, readHealth, reportHealth, type HealthStatus } from '../src/health/health-file.ts';
import { createLogger } from '../src/log.ts';
import { ensureTinyModel } from '../src/tiny-model/index.ts';
import { PipelineThread } from '../src/worker/pipeline-thread.ts';
import { RemoteWorker } from '../src/worker/remote-worker.ts';
import { startHarness, useSharedTinyPipeline } from './bot-harness.ts';
import { RedisServer } from './redis-server.ts';
import { entryPoint } from './entry-point.ts';

const logger = createLogger('silent');
const directory = mkdtempSync(join(tmpdir(), 'imagine-health-'));

describe('the health file', () => {
  it('says what the probe says while it is fresh, and goes away on stop', async () => {
    const path = join(directory, 'probe.json');
    let status: HealthStatus = { healthy: true, detail: 'all good' };
    const reporter = reportHealth({ path, logger, probe: () => status, intervalMs: 20 });
    await vi.waitFor(async () => expect(await readHealth(path)).toEqual({ healthy: true, detail: 'all good' }));

    status = { healthy: false, detail: 'gateway lost' };
    await vi.waitFor(async () => expect(await readHealth(path)).toEqual({ healthy: false, detail: 'gateway lost' }));

    await reporter.stop();
    expect(existsSync(path)).toBe(false);
    expect(await readHealth(path)).toMatchObject({ healthy: false, detail: expect.stringContaining('no health file') });
  });

  it('calls a process that stopped writing unhealthy, however healthy it last was', async () => {
    const path = join(directory, 'stale.json');
    const at = Date.now();
    writeFileSync(path, JSON.stringify({ healthy: true, detail: 'all good', at }));
    expect((await readHealth(path, at + HEALTH_MAX_AGE_MS)).healthy).toBe(true);
    const stale = await readHealth(path, at + HEALTH_MAX_AGE_MS + 1000);
    expect(stale.healthy).toBe(false);
    expect(stale.detail).toMatch(/last reported \d+ s ago \(stuck or gone\): all good/);
  });

  it('calls an unreadable file unhealthy', async () => {
    const path = join(directory, 'broken.json');
    writeFileSync(path, '{"healthy": tr');
    expect(await readHealth(path)).toMatchObject({ healthy: false, detail: expect.stringContaining('not JSON') });
    writeFileSync(path, '{"detail": "no flag"}');
    expect(await readHealth(path)).toMatchObject({ healthy: false, detail: expect.stringContaining('no status') });
  });
});

describe('npm run healthcheck', () => {
  const healthcheck = (environment: Record<string, string>) =>
    spawnSync(process.execPath, [entryPoint('src/cli/healthcheck.ts')], {
      cwd: directory,
      env: { PATH: process.env.PATH ?? '', ...environment },
      encoding: 'utf8',
    });

  it('exits 0 for a healthy process and 1 otherwise, saying why', () => {
    const path = join(directory, 'cli.json');
    writeFileSync(path, JSON.stringify({ healthy: true, detail: 'Discord gateway connected', at: Date.now() }));
    const healthy = healthcheck({ HEALTH_FILE: path });
    expect([healthy.status, healthy.stdout]).toEqual([0, 'healthy: Discord gateway connected\n']);

    writeFileSync(path, JSON.stringify({ healthy: false, detail: 'Discord gateway not connected', at: Date.now() }));
    const unhealthy = healthcheck({ HEALTH_FILE: path });
    expect([unhealthy.status, unhealthy.stdout]).toEqual([1, 'unhealthy: Discord gateway not connected\n']);

    const unset = healthcheck({});
    expect(unset.status).toBe(1);
    expect(unset.stderr).toContain('HEALTH_FILE is not set');
  });
});

describe("the bot's health: its gateway connection", () => {
  const generator = useSharedTinyPipeline();

  it('is healthy while connected, not while the gateway reconnects, and not after shutdown', async () => {
    const harness = await startHarness(generator);
    const { bot, fake } = harness;
    expect(bot.health()).toMatchObject({ healthy: true, detail: expect.stringMatching(/^Discord gateway connected( \(ping \d+ ms\))?$/) });

    const whileReconnecting = new Promise<HealthStatus>((resolve) => bot.client.once(Events.ShardReconnecting, () => resolve(bot.health())));
    fake.dropGatewayConnections();
    expect(await whileReconnecting).toMatchObject({ healthy: false, detail: expect.stringMatching(/^Discord gateway not connected \(shard 0 \w+\)$/) });
    await fake.waitFor(() => bot.health().healthy, 5_000, 'reconnected');

    await bot.shutdown();
    expect(bot.health().healthy).toBe(false);
  });
});

describe("a worker's health: its heartbeat reaching Redis", () => {
  let redis: RedisServer | undefined;
  let thread: PipelineThread | undefined;
  afterEach(async () => {
    vi.useRealTimers();
    await thread?.dispose();
    await redis?.dispose();
  });

  it('is healthy while heartbeats reach Redis, not once the last one is older than its lifetime, and not while stopping', async () => {
    redis = await RedisServer.start();
    thread = PipelineThread.start({ modelDir: await ensureTinyModel() });
    const worker = new RemoteWorker({ redisUrl: redis.url, generator: thread, stalledJobTimeoutMs: 3000, logger });
    await worker.ready;
    await vi.waitFor(() => expect(worker.health()).toMatchObject({ healthy: true, detail: expect.stringMatching(/^heartbeat reached Redis \d s ago; model tiny\S* loaded$/) }));

    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + 16_000 });
    expect(worker.health()).toMatchObject({ healthy: false, detail: expect.stringMatching(/^last heartbeat reached Redis 1\d s ago/) });
    vi.useRealTimers();

    await worker.close(0);
    expect(worker.health()).toMatchObject({ healthy: false, detail: expect.stringContaining('stopping') });
  });

  it('is unhealthy when no heartbeat ever reached Redis', async () => {
    redis = await RedisServer.start();
    const url = redis.url;
    await redis.dispose();
    redis = undefined;
    thread = PipelineThread.start({ modelDir: await ensureTinyModel() });
    const worker = new RemoteWorker({ redisUrl: url, generator: thread, stalledJobTimeoutMs: 3000, logger });
    await worker.ready;
    expect(worker.health()).toMatchObject({ healthy: false, detail: expect.stringMatching(/^no heartbeat has reached Redis yet; model \S+ loaded$/) });
    await worker.close(0);
  });
});
