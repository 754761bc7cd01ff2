import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, loadWorkerConfig } from '../src/config.ts';
import { entryPoint } from './entry-point.ts';

const discord = { DISCORD_TOKEN: 'token-value', DISCORD_APPLICATION_ID: '123456789012345678' };
const root = fileURLToPath(new URL('..', import.meta.url));

function runScript(script: string, environment: Record<string, string>) {
  return spawnSync(process.execPath, [entryPoint(script)], {
    cwd: mkdtempSync(join(tmpdir(), 'imagine-scale-config-')),
    env: { PATH: process.env.PATH ?? '', ...environment },
    encoding: 'utf8',
    timeout: 30_000,
  });
}

describe('the queue backend settings', () => {
  it('defaults to the local backend (npm start, no Redis)', () => {
    expect(loadConfig(discord).backend).toEqual({ kind: 'local', dataDir: join(root, 'data') });
    expect(loadConfig({ ...discord, DATA_DIR: 'var/imagine' }).backend).toEqual({ kind: 'local', dataDir: resolve('var/imagine') });
  });

  it('reads the BullMQ settings, with the documented defaults', () => {
    expect(loadConfig({ ...discord, QUEUE_BACKEND: 'bullmq', REDIS_URL: 'redis://:secret@10.0.0.5:6379/1' }).backend).toEqual({
      kind: 'bullmq',
      redisUrl: 'redis://:secret@10.0.0.5:6379/1',
      stalledJobTimeoutMs: 15_000,
      resultTtlMs: 86_400_000,
    });
  });

  it('names what is wrong: a missing or non-Redis REDIS_URL, an unknown backend', () => {
    expect(() => loadConfig({ ...discord, QUEUE_BACKEND: 'bullmq' })).toThrow(new ConfigError('Invalid configuration (check .env):\n  REDIS_URL: is required when QUEUE_BACKEND=bullmq'));
    expect(() => loadConfig({ ...discord, QUEUE_BACKEND: 'bullmq', REDIS_URL: 'http://10.0.0.5' })).toThrow(/^ {2}REDIS_URL: must be a redis:\/\/ or rediss:\/\/ URL/m);
    expect(() => loadConfig({ ...discord, QUEUE_BACKEND: 'kafka' })).toThrow(/^ {2}QUEUE_BACKEND: /m);
    expect(() => loadConfig({ ...discord, STALLED_JOB_TIMEOUT_MS: '10' })).toThrow(/^ {2}STALLED_JOB_TIMEOUT_MS: /m);
  });

  it('gives a worker its settings without any Discord variable, and requires REDIS_URL', () => {
    expect(loadWorkerConfig({ REDIS_URL: 'redis://127.0.0.1:6379', SD_MODEL_DIR: '/models/sd15', EXECUTION_PROVIDER: 'cuda', STALLED_JOB_TIMEOUT_MS: '5000' })).toEqual({
      redisUrl: 'redis://127.0.0.1:6379',
      model: { dir: '/models/sd15', executionProvider: 'cuda', autoPull: undefined },
      stalledJobTimeoutMs: 5000,
      shutdownTimeoutMs: 30_000,
      logLevel: 'info',
    });
    expect(() => loadWorkerConfig({})).toThrow('REDIS_URL: is required for a worker (it takes its jobs from Redis)');
  });

  it('npm run bot refuses the local backend, and npm run worker stops with a clear message when it has no model', () => {
    const bot = runScript('src/bot-main.ts', discord);
    expect(bot.status).toBe(1);
    expect(bot.stderr).toContain('npm run bot hands its jobs to `npm run worker` processes through Redis: set QUEUE_BACKEND=bullmq and REDIS_URL.');

    const worker = runScript('src/worker-main.ts', { REDIS_URL: 'redis://127.0.0.1:1', SD_MODEL_DIR: '/nonexistent/model' });
    expect(worker.status).toBe(1);
    const fatal = worker.stdout.split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line)).find((line) => line.level === 60);
    expect(fatal).toMatchObject({ msg: 'no usable model', error: { message: 'Model directory /nonexistent/model does not exist' } });

    const emptyModel = mkdtempSync(join(tmpdir(), 'imagine-empty-model-'));
    const unloadable = runScript('src/worker-main.ts', { REDIS_URL: 'redis://127.0.0.1:1', SD_MODEL_DIR: emptyModel });
    expect(unloadable.status).toBe(1);
    // The model catalog reads the default model's files at start, so a folder that is no model is refused before any load.
    expect(unloadable.stdout).toContain('"msg":"no usable model"');
    expect(unloadable.stdout).toContain('is not a Stable Diffusion ONNX model: missing model_index.json');
  });
});
