import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { InteractionResponseType, MessageFlags, PermissionFlagsBits } from 'discord.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';
import { startBot, type RunningBot } from '../src/discord/bot.ts';
import { deployCommands } from '../src/discord/deploy.ts';
import { parseParameters } from '../src/image/parameters.ts';
import { readPngParameters } from '../src/image/png.ts';
import { createLogger } from '../src/log.ts';
import { ModelCatalog } from '../src/models/catalog.ts';
import { LocalJobQueue } from '../src/queue/local-queue.ts';
import { SqliteSettingsStore } from '../src/settings/sqlite-store.ts';
import { writeTinyModel } from '../src/tiny-model/index.ts';
import { ModelSwitcher } from '../src/worker/model-switcher.ts';
import { TEST_ENVIRONMENT, customIds, embedField } from './bot-harness.ts';
import { FakeDiscord, type InteractionHandle, type OptionValue, type StoredMessage } from './fake-discord/index.ts';
import { DEFAULT_MEMBER_PERMISSIONS } from './fake-discord/world.ts';

// Two installed models in a models folder of their own: "alpha" (the default, PNDM) and "beta" (Euler a, other weights).
// The bot offers what its queue's catalog holds; nothing reads the folder but the catalog.

let modelsDir: string;
let dataDir: string;
let fake: FakeDiscord;
let bot: RunningBot;
let switcher: ModelSwitcher;

beforeAll(async () => {
  modelsDir = await mkdtemp(join(tmpdir(), 'imagine-bot-models-'));
  dataDir = await mkdtemp(join(tmpdir(), 'imagine-bot-data-'));
  await writeTinyModel(join(modelsDir, 'alpha'));
  await writeTinyModel(join(modelsDir, 'beta'), { seed: 7, scheduler: { _class_name: 'EulerAncestralDiscreteScheduler' } });

  fake = await FakeDiscord.start();
  const config = loadConfig({
    ...TEST_ENVIRONMENT,
    LOG_LEVEL: 'silent',
    DISCORD_TOKEN: fake.botToken,
    DISCORD_APPLICATION_ID: fake.applicationId,
    DISCORD_GUILD_ID: fake.guildId,
    DISCORD_API_URL: fake.apiUrl,
  });
  const logger = createLogger(config.logLevel, new Writable({ write: (_chunk, _encoding, done) => done() }));
  await deployCommands(config);
  const catalog = await ModelCatalog.load(join(modelsDir, 'alpha'), modelsDir);
  switcher = new ModelSwitcher({ catalog });
  const queue = new LocalJobQueue({ generator: switcher, catalog, policy: config.generation, ...config.queue, logger });
  bot = await startBot({ config, queue, settings: SqliteSettingsStore.open(dataDir), logger });
  await fake.waitFor(() => bot.client.isReady() && bot.client.guilds.cache.size > 0, 5_000, 'bot ready');
  await switcher.ready;
});
afterAll(async () => {
  await bot?.shutdown();
  expect(fake?.internalErrors).toEqual([]);
  await fake?.close();
  await switcher?.dispose();
  await rm(modelsDir, { recursive: true, force: true });
  await rm(dataDir, { recursive: true, force: true });
});

function imagine(username: string, options: Record<string, OptionValue>): InteractionHandle {
  return fake.sendCommand({ name: 'imagine', options, user: fake.user(username) });
}

/** Jobs for other models run one after another, each loading its model first: on a busy machine that takes a while. */
const FINAL_REPLY_TIMEOUT_MS = 60_000;

async function finalReply(handle: InteractionHandle): Promise<StoredMessage> {
  return fake.waitFor(
    () => {
      const reply = fake.originalResponse(handle);
      if (!reply || reply.flags & MessageFlags.Loading) return undefined;
      return customIds(reply).some((id) => id.startsWith('imagine:cancel:')) ? undefined : reply;
    },
    FINAL_REPLY_TIMEOUT_MS,
    'final reply',
  );
}

async function ephemeralReply(handle: InteractionHandle): Promise<string> {
  const callback = await fake.waitFor(() => fake.interaction(handle).callback, 5_000, 'reply');
  expect(callback.type).toBe(InteractionResponseType.ChannelMessageWithSource);
  const data = callback.data as { content: string; flags?: number };
  expect((data.flags ?? 0) & MessageFlags.Ephemeral).toBe(MessageFlags.Ephemeral);
  return data.content;
}

function pngParameters(message: StoredMessage) {
  return parseParameters(readPngParameters(message.attachments[0].data) ?? '');
}

describe('/imagine with several installed models', () => {
  it('registers a model option and autocompletes the installed models, the default marked', async () => {
    const registered = fake.guildCommands().find((command) => command.name === 'imagine');
    expect(registered?.options?.find((option) => option.name === 'model')).toMatchObject({ type: 3, autocomplete: true });

    const all = fake.sendAutocomplete({ name: 'imagine', focused: 'model', options: { model: '' }, user: fake.user('alice') });
    expect((await fake.waitFor(() => fake.interaction(all).callback, 5_000, 'autocomplete')).data).toEqual({
      choices: [
        { name: 'alpha — 256x256, tiny test model (default)', value: 'alpha' },
        { name: 'beta — 256x256, tiny test model', value: 'beta' },
      ],
    });
    const typed = fake.sendAutocomplete({ name: 'imagine', focused: 'model', options: { model: 'BE' }, user: fake.user('alice') });
    expect((await fake.waitFor(() => fake.interaction(typed).callback, 5_000, 'autocomplete')).data).toEqual({
      choices: [{ name: 'beta — 256x256, tiny test model', value: 'beta' }],
    });
  });

  it('draws with the chosen model, names it in the embed and the PNG, and a reroll keeps it', async () => {
    const reply = await finalReply(imagine('alice', { prompt: 'a fox', model: 'beta', seed: 5 }));
    expect(embedField(reply, 'Model')).toBe('beta');
    expect(embedField(reply, 'Scheduler')).toBe('Euler a');
    expect(pngParameters(reply)).toMatchObject({ model: 'beta', scheduler: 'Euler a', seed: '5' });

    // Load the default in between, so the reroll has to switch back to beta.
    const plain = await finalReply(imagine('bob', { prompt: 'a fox', seed: 5 }));
    expect(pngParameters(plain)).toMatchObject({ model: 'alpha', scheduler: 'PNDM' });
    expect(embedField(plain, 'Model')).toBe('alpha');

    const rerolled = await finalReply(fake.clickButton({ messageId: reply.id, customId: 'imagine:reroll', user: fake.user('carol') }));
    expect(embedField(rerolled, 'Model')).toBe('beta');
    expect(pngParameters(rerolled).model).toBe('beta');
    expect(embedField(rerolled, 'Seed')).not.toBe('5');
    expect(switcher.loadedModel).toBe('beta');
  }, 2 * FINAL_REPLY_TIMEOUT_MS);

  it('refuses an unknown model or a path ephemerally, naming the installed ones', async () => {
    for (const model of ['gamma', '../alpha', join(modelsDir, 'beta')]) {
      expect(await ephemeralReply(imagine('alice', { prompt: 'x', model }))).toBe(`⚠️ No model is called "${model}"; choose one of alpha, beta.`);
    }
  });

  it('serializes jobs for different models queued together: each is delivered, drawn by its own model', async () => {
    const wanted = ['alpha', 'beta', 'alpha', 'beta'];
    const handles = wanted.map((model, index) => imagine(`user${index}`, { prompt: `job ${index}`, model, steps: 3 }));
    const replies = await Promise.all(handles.map(finalReply));
    expect(replies.map((reply) => pngParameters(reply).model)).toEqual(wanted);
    expect(replies.map((reply) => embedField(reply, 'Model'))).toEqual(wanted);
    // Every job but the first had to load its model first, and said so while it did.
    const loadingShown = replies.filter((reply) => reply.revisions.some((revision) => /Loading the model (alpha|beta)/.test(revision.content)));
    expect(loadingShown.length).toBeGreaterThanOrEqual(1);
  }, 2 * FINAL_REPLY_TIMEOUT_MS);

  it('a server’s allowed models and default model: others are refused, and a job that names none gets the server’s', async () => {
    const settings = async (options: Record<string, OptionValue>) =>
      ephemeralReply(fake.sendCommand({ name: 'settings', options, user: fake.user('mod'), memberPermissions: DEFAULT_MEMBER_PERMISSIONS | PermissionFlagsBits.ManageGuild }));
    expect(await settings({ setting: 'allowed_models', value: 'beta, gamma' })).toBe('⚠️ No model is called "gamma"; the installed ones are alpha, beta.');
    expect(await settings({ setting: 'allowed_models', value: 'beta' })).toMatch(/^✅ Allowed models set to beta\./);
    try {
      expect(await ephemeralReply(imagine('alice', { prompt: 'a fox', model: 'alpha' }))).toBe('⚠️ The model alpha is not used on this server; choose one of beta.');
      const offered = fake.sendAutocomplete({ name: 'imagine', focused: 'model', options: { model: '' }, user: fake.user('alice') });
      expect((await fake.waitFor(() => fake.interaction(offered).callback, 5_000, 'autocomplete')).data).toEqual({
        choices: [{ name: 'beta — 256x256, tiny test model', value: 'beta' }],
      });
      // The operator's default (alpha) is not allowed here: the first allowed model is the server's default.
      expect(pngParameters(await finalReply(imagine('alice', { prompt: 'a fox', steps: 2 }))).model).toBe('beta');
      expect(await settings({ setting: 'allowed_models' })).toMatch(/^✅/);
      expect(await settings({ setting: 'default_model', value: 'beta' })).toMatch(/^✅ Default model set to beta\./);
      expect(pngParameters(await finalReply(imagine('bob', { prompt: 'a fox', steps: 2 }))).model).toBe('beta');
    } finally {
      await settings({ reset: true });
    }
  }, 2 * FINAL_REPLY_TIMEOUT_MS);
});

