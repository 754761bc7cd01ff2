import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MessageFlags, PermissionFlagsBits } from 'discord.js';
import { Redis } from 'ioredis';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { OptionError } from '../src/jobs/options.ts';
import { ClipTokenizer } from '../src/pipeline/tokenizer.ts';
import { KEYS } from '../src/queue/bullmq-protocol.ts';
import { ensureTinyModel } from '../src/tiny-model/index.ts';
import { startHarness, startRedisBackend, useSharedTinyPipeline, type Harness, type RedisBackend } from './bot-harness.ts';
import type { StoredMessage } from './fake-discord/index.ts';
import { safetensorsBytes } from './safetensors-file.ts';
import { DEFAULT_MEMBER_PERMISSIONS } from './fake-discord/world.ts';

const generator = useSharedTinyPipeline();
const TOO_LONG = '1'.repeat(700);
const TOO_LONG_REFUSAL = '⚠️ The prompt is 700 tokens long (10 chunks); at most 600 fit (8 chunks of 75). Shorten it.';

// The tiny model's own tokenizer, read from its folder: what the answers are checked against.
let tokenizer: ClipTokenizer;
beforeAll(async () => {
  tokenizer = await ClipTokenizer.fromDirectory(join(await ensureTinyModel(), 'tokenizer'));
});

async function tokensReply(harness: Harness, options: Record<string, string>): Promise<StoredMessage> {
  const handle = harness.fake.sendCommand({ name: 'tokens', options, user: harness.fake.user('alice') });
  return harness.fake.waitFor(() => {
    const reply = harness.fake.originalResponse(handle);
    return reply && !(reply.flags & MessageFlags.Loading) && reply;
  }, 10_000, 'token view');
}

/** The listing's row of one token: position, id, entry and weight. */
function row(position: number, word: string, weight = ''): RegExp {
  const [id] = tokenizer.tokenize(word);
  return new RegExp(`^ *${position} +${id}  ${word}</w>${weight ? `  ×${weight.replace('.', '\\.')}` : ''}$`, 'm');
}

describe('/tokens', () => {
  it('answers only the user with the prompt as CLIP reads it: ids, weights, BREAK and chunks', async () => {
    const harness = await startHarness(generator);
    const reply = await tokensReply(harness, { prompt: 'a (red:1.2) fox BREAK [dog] --ar 2:3' });
    expect(reply.flags & MessageFlags.Ephemeral).toBe(MessageFlags.Ephemeral);
    const { content } = reply;
    expect(content).toMatch(/^\*\*tiny\S*\*\* · 4 tokens in 2 chunks of 75 \(at most 8\) · AUTOMATIC1111 syntax\n/);
    expect(content).toContain('the `--` parameters at the end are not part of the prompt');
    expect(content).toMatch(row(1, 'a'));
    expect(content).toMatch(row(2, 'red', '1.2'));
    expect(content).toMatch(row(3, 'fox'));
    expect(content).toMatch(/ends at BREAK\n[^]*\nBREAK\nchunk 2 /);
    expect(content).toMatch(row(1, 'dog', '0.909'));
    expect(content).not.toContain('ar</w>');
    expect(reply.attachments).toEqual([]);
  });

  it('shows an embedding as the vectors it puts in the prompt, each counted', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tokens-embeddings-'));
    const width = (await generator.ready).textContextWidth!;
    writeFileSync(join(dir, 'mything.safetensors'), safetensorsBytes({ emb_params: { dtype: 'F32', shape: [3, width], values: new Float32Array(3 * width) } }));
    try {
      const harness = await startHarness(generator, { EMBEDDINGS_DIR: dir });
      const { content } = await tokensReply(harness, { prompt: 'a mything fox' });
      expect(content).toMatch(/^\*\*tiny\S*\*\* · 5 tokens of 75 · AUTOMATIC1111 syntax · embedding mything \(3 vectors\)\n/);
      expect(content).toMatch(row(1, 'a'));
      for (const vector of [1, 2, 3]) expect(content).toMatch(new RegExp(`^ *${1 + vector} +—  mything \\(embedding, vector ${vector} of 3\\)$`, 'm'));
      expect(content).toMatch(row(5, 'fox'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('shows where the plain syntax cuts a long prompt, and attaches the whole list when it does not fit', async () => {
    const harness = await startHarness(generator, { PROMPT_SYNTAX: 'plain' });
    const words = Array.from({ length: 130 }, (_, index) => ['red', 'fox', 'dog'][index % 3]);
    const reply = await tokensReply(harness, { prompt: words.join(' ') });
    expect(reply.content).toMatch(/^\*\*tiny\S*\*\* · 130 tokens · plain text \(diffusers\) · the model reads the first 75: 55 cut off\n/);
    expect([...reply.content].length).toBeLessThanOrEqual(2000);
    expect(reply.content).toMatch(/… the whole list is in tokens\.txt$/);
    expect(reply.attachments.map((attachment) => attachment.filename)).toEqual(['tokens.txt']);
    const list = reply.attachments[0].data.toString('utf8');
    const lines = list.trimEnd().split('\n');
    const marker = lines.indexOf('✂ cut: the model never sees the tokens below');
    expect(lines[marker - 1]).toMatch(/^ 76 +\d+  <\|endoftext\|>$/);
    expect(lines.slice(marker + 1)).toHaveLength(55);
    expect(list).toMatch(row(75, words[74]));
    expect(lines.at(-1)).toMatch(row(130, words[129]));
  });

  it("follows the server's prompt syntax from /settings", async () => {
    const harness = await startHarness(generator);
    const moderator = { user: harness.fake.user('mod'), memberPermissions: DEFAULT_MEMBER_PERMISSIONS | PermissionFlagsBits.ManageGuild };
    await harness.refusal(harness.fake.sendCommand({ name: 'settings', options: { setting: 'prompt_syntax', value: 'plain' }, ...moderator }));
    const reply = await tokensReply(harness, { prompt: 'a (red:1.2) fox' });
    expect(reply.content).toMatch(/^\*\*tiny\S*\*\* · 9 tokens of 75 · plain text \(diffusers\)\n/);
    expect(reply.content).not.toContain('×1.2');
  });

  it('refuses an unknown model and a malformed parameter, ephemerally', async () => {
    const harness = await startHarness(generator);
    const unknown = harness.fake.sendCommand({ name: 'tokens', options: { prompt: 'a fox', model: 'nope' }, user: harness.fake.user('alice') });
    expect(await harness.refusal(unknown)).toMatch(/^⚠️ No model is called "nope"; choose one of tiny/);
    const malformed = harness.fake.sendCommand({ name: 'tokens', options: { prompt: 'a fox --ar 16-9' }, user: harness.fake.user('alice') });
    expect(await harness.refusal(malformed)).toMatch(/^⚠️ --ar must look like 16:9/);
  });
});

describe('a prompt too long for the model', () => {
  it('is refused by /imagine at once, ephemerally, and never queued', async () => {
    const harness = await startHarness(generator);
    expect(await harness.refusal(harness.imagine('alice', { prompt: TOO_LONG }))).toBe(TOO_LONG_REFUSAL);
    expect(await harness.refusal(harness.imagine('alice', { prompt: 'a fox', negative_prompt: TOO_LONG, guidance: 7 }))).toBe(TOO_LONG_REFUSAL.replace('The prompt', 'The negative prompt'));
    expect(harness.logs.some((line) => line.msg === 'job queued')).toBe(false);
    // Without guidance the negative prompt is not used, so it does not matter how long it is.
    const reply = await harness.finalReply(harness.imagine('alice', { prompt: 'a fox', negative_prompt: TOO_LONG, guidance: 1 }));
    expect(reply.attachments).toHaveLength(1);
  });
});

describe('with Redis (QUEUE_BACKEND=bullmq) the bot has no model files', () => {
  let backend: RedisBackend | undefined;
  afterEach(async () => backend?.close());

  it("reads the tokenizer each worker publishes in Redis, and refuses a too-long prompt before it is queued", async () => {
    backend = await startRedisBackend(generator);
    const { redis, queue } = backend;
    const model = queue.offeredModels()!.models[0];

    const published = await queue.tokenizer(model);
    const text = 'a (red:1.2) fox, 🐱 wearing a hat';
    expect(published.tokenize(text)).toEqual(tokenizer.tokenize(text));
    expect(published.ids).toEqual(tokenizer.ids);

    const client = new Redis(redis.url);
    const keys = await client.keys(KEYS.tokenizer('*'));
    expect(keys).toHaveLength(1);
    expect(await client.ttl(keys[0])).toBeGreaterThan(0);
    await client.quit();

    await expect(queue.enqueue('alice', { prompt: TOO_LONG, count: 1 })).rejects.toThrow(new OptionError(TOO_LONG_REFUSAL.slice(3)));
  });
});
