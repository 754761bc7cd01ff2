import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'dotenv';
import { describe, expect, it } from 'vitest';
import { ConfigError, ENVIRONMENT_VARIABLES, loadConfig } from '../src/config.ts';
import { parseSize } from '../src/jobs/options.ts';

const minimal = { DISCORD_TOKEN: 'token-value', DISCORD_APPLICATION_ID: '123456789012345678' };

describe('loadConfig', () => {
  it('applies the documented defaults', () => {
    const config = loadConfig(minimal);
    expect(config.discord).toEqual({ token: 'token-value', applicationId: '123456789012345678', guildId: undefined, apiUrl: undefined, restTimeoutMs: 15_000 });
    expect(config.model).toEqual({ dir: undefined, executionProvider: 'cpu' });
    expect(config.queue).toEqual({ maxQueue: 20, maxJobsPerUser: 2 });
    expect(config.timing).toEqual({
      progressEditIntervalMs: 2000,
      interactionTokenTtlMs: 900_000,
      tokenExpiryMarginMs: 60_000,
      shutdownTimeoutMs: 30_000,
    });
    expect(config.generation.sizes).toBe('model');
    expect(config.generation.promptSyntax).toBe('a1111');
    expect(config.embeddingsDir).toBe(fileURLToPath(new URL('../embeddings', import.meta.url)));
  });

  it('reads every variable, treating empty ones as unset', () => {
    const config = loadConfig({
      ...minimal,
      DISCORD_GUILD_ID: '987654321098765432',
      DISCORD_API_URL: 'http://127.0.0.1:8080/api/',
      SD_MODEL_DIR: '/models/sd15',
      EXECUTION_PROVIDER: 'cuda',
      DEFAULT_STEPS: '25',
      MAX_STEPS: '40',
      DEFAULT_GUIDANCE: '',
      MAX_GUIDANCE: '12.5',
      DEFAULT_SCHEDULER: 'Euler a',
      DEFAULT_SIZE: '64x64',
      SIZES: '64x64, 96x64',
      MAX_QUEUE: '5',
      MAX_JOBS_PER_USER: '1',
      PROGRESS_EDIT_INTERVAL_MS: '0',
      INTERACTION_TOKEN_TTL_MS: '5000',
      TOKEN_EXPIRY_MARGIN_MS: '1000',
      SHUTDOWN_TIMEOUT_MS: '100',
      LOG_LEVEL: 'debug',
      PROMPT_SYNTAX: 'plain',
      EMBEDDINGS_DIR: tmpdir(),
      DISCORD_REST_TIMEOUT_MS: '4000',
      DEFAULT_DECODER: 'tiny',
      PREVIEW_EVERY_STEPS: '2',
      PREVIEW_BUDGET_PERCENT: '5',
    });
    expect(config.embeddingsDir).toBe(tmpdir());
    expect(config.discord.apiUrl).toBe('http://127.0.0.1:8080/api');
    expect(config.discord.restTimeoutMs).toBe(4000);
    expect(config.discord.guildId).toBe('987654321098765432');
    expect(config.model).toEqual({ dir: '/models/sd15', executionProvider: 'cuda' });
    expect(config.generation).toEqual({
      defaultSteps: 25,
      maxSteps: 40,
      defaultGuidance: undefined,
      maxGuidance: 12.5,
      defaultScheduler: 'Euler a',
      defaultSize: { width: 64, height: 64 },
      sizes: [
        { width: 64, height: 64 },
        { width: 96, height: 64 },
      ],
      promptSyntax: 'plain',
      defaultDecoder: 'tiny',
      // Previews no faster than the reply is edited.
      previews: { everySteps: 2, minIntervalMs: 0, maxShare: 0.05 },
    });
    expect(config.queue).toEqual({ maxQueue: 5, maxJobsPerUser: 1 });
    expect(config.timing.interactionTokenTtlMs).toBe(5000);
    expect(config.logLevel).toBe('debug');
  });

  it('names each variable that is wrong', () => {
    let error: unknown;
    try {
      loadConfig({
        DISCORD_APPLICATION_ID: 'abc',
        EXECUTION_PROVIDER: 'tpu',
        MAX_QUEUE: 'many',
        SIZES: '512x512,big',
        DISCORD_API_URL: 'localhost',
        PROMPT_SYNTAX: 'midjourney',
        EMBEDDINGS_DIR: '/no/such/folder',
        DEFAULT_DECODER: 'fastest',
        PREVIEW_BUDGET_PERCENT: '0',
      });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const message = (error as Error).message;
    for (const name of ['DISCORD_TOKEN', 'DISCORD_APPLICATION_ID', 'EXECUTION_PROVIDER', 'MAX_QUEUE', 'SIZES', 'DISCORD_API_URL', 'PROMPT_SYNTAX', 'EMBEDDINGS_DIR', 'DEFAULT_DECODER', 'PREVIEW_BUDGET_PERCENT']) {
      expect(message).toMatch(new RegExp(`^  ${name}: `, 'm'));
    }
    expect(message).toContain('"big" is not WIDTHxHEIGHT');
    expect(message).toContain('PROMPT_SYNTAX: must be one of a1111, plain');
    expect(message).toContain('EMBEDDINGS_DIR: must be an existing folder');
    expect(message).toContain('DEFAULT_DECODER: must be one of full, tiny');
    expect(message).toContain('PREVIEW_BUDGET_PERCENT: must be more than 0');
  });

  it('reads the servers’ ceilings and the bot’s owners, naming a wrong one', () => {
    const config = loadConfig({ ...minimal, DAILY_IMAGES_PER_USER: '25', OWNER_IDS: ' 123456789012345678 , 223456789012345678' });
    expect(config.servers).toEqual({ dailyImagesPerUser: 25, dailyImagesPerServer: undefined, ownerIds: ['123456789012345678', '223456789012345678'] });
    expect(() => loadConfig({ ...minimal, OWNER_IDS: '123456789012345678,@alice' })).toThrow('OWNER_IDS: "@alice" is not a Discord user ID (17 to 20 digits)');
    expect(() => loadConfig({ ...minimal, DAILY_IMAGES_PER_SERVER: '-1' })).toThrow(/DAILY_IMAGES_PER_SERVER: /);
  });

  it('takes a SAFETY_CHECKER folder with a model.onnx, and names the variable and the fix otherwise', () => {
    const root = mkdtempSync(join(tmpdir(), 'safety-config-'));
    try {
      mkdirSync(join(root, 'onnx'));
      writeFileSync(join(root, 'onnx', 'model.onnx'), '');
      mkdirSync(join(root, 'pytorch'));
      writeFileSync(join(root, 'pytorch', 'config.json'), '{}');
      expect(loadConfig({ ...minimal, SAFETY_CHECKER: join(root, 'onnx') }).model.safetyChecker).toBe(join(root, 'onnx'));
      expect(() => loadConfig({ ...minimal, SAFETY_CHECKER: join(root, 'pytorch') })).toThrow(
        `SAFETY_CHECKER: ${join(root, 'pytorch')} has no model.onnx; for a PyTorch safety checker (config.json + model.safetensors) run \`npm run model:import -- ${join(root, 'pytorch')} --safety-checker\``,
      );
      expect(() => loadConfig({ ...minimal, SAFETY_CHECKER: join(root, 'none') })).toThrow(`SAFETY_CHECKER: ${join(root, 'none')} is not a folder`);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('refuses defaults above their limits', () => {
    expect(() => loadConfig({ ...minimal, DEFAULT_STEPS: '60' })).toThrow('DEFAULT_STEPS: 60 is above MAX_STEPS (50)');
  });

  it('is documented variable by variable in .env.example, whose values load', () => {
    const example = parse(readFileSync(new URL('../.env.example', import.meta.url)));
    expect(Object.keys(example).sort()).toEqual([...ENVIRONMENT_VARIABLES].sort());
    expect(() => loadConfig(example)).toThrow(/DISCORD_TOKEN: is required/);
    expect(loadConfig({ ...example, ...minimal }).queue).toEqual({ maxQueue: 20, maxJobsPerUser: 2 });
  });

  it('parses sizes', () => {
    expect(parseSize(' 512 x 768 ')).toEqual({ width: 512, height: 768 });
    expect(parseSize('0x64')).toBeUndefined();
    expect(parseSize('512')).toBeUndefined();
  });
});
