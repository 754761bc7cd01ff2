import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseParameters } from '../src/image/parameters.ts';
import { readPngParameters } from '../src/image/png.ts';
import { ensureTinyModel } from '../src/tiny-model/index.ts';
import { PipelineThread } from '../src/worker/pipeline-thread.ts';
import { embedField, startHarness, type Harness } from './bot-harness.ts';
import { safetensorsBytes } from './safetensors-file.ts';

// The bot's own pipeline thread, reading a test folder of embeddings (the shared one reads the default folder).
const embeddingsDir = mkdtempSync(join(tmpdir(), 'bot-embeddings-'));
const TINY_WIDTH = 32;
let thread: PipelineThread;
let harness: Harness | undefined;

beforeAll(async () => {
  writeFileSync(join(embeddingsDir, 'mystyle.safetensors'), safetensorsBytes({ emb_params: { dtype: 'F32', shape: [2, TINY_WIDTH], values: new Float32Array(2 * TINY_WIDTH).fill(0.5) } }));
  writeFileSync(join(embeddingsDir, 'EasyNegative.safetensors'), safetensorsBytes({ emb_params: { dtype: 'F16', shape: [8, 768], values: new Float32Array(8 * 768) } }));
  writeFileSync(join(embeddingsDir, 'old.pt'), 'pickle');
  thread = PipelineThread.start({ modelDir: await ensureTinyModel(), embeddingsDir });
  await thread.ready;
});
afterEach(async () => {
  await harness?.stop();
  expect(harness?.fake.internalErrors ?? []).toEqual([]);
  harness = undefined;
});
afterAll(async () => {
  await thread.dispose();
  rmSync(embeddingsDir, { recursive: true, force: true });
});

const start = (environment: Record<string, string> = {}) => startHarness(thread, { EMBEDDINGS_DIR: embeddingsDir, ...environment });

describe('/imagine with prompts as people write them', () => {
  it('takes Midjourney-style parameters from the end of the prompt; the command’s own options win', async () => {
    harness = await start();
    const handle = harness.imagine('alice', { prompt: 'a (red:1.2) fox --ar 2:1 --no blurry --seed 7 --steps 3 --cfg 5', negative_prompt: 'ugly', steps: 2 });
    const reply = await harness.finalReply(handle);
    expect(reply.embeds[0].description).toBe('a (red:1.2) fox');
    expect(embedField(reply, 'Negative prompt')).toBe('ugly, blurry');
    expect(embedField(reply, 'Seed')).toBe('7');
    expect(embedField(reply, 'Steps')).toBe('2');
    expect(embedField(reply, 'Guidance')).toBe('5');
    // SIZES offers 64x64, 128x64 and 512x512: 2:1 is nearest to 128x64.
    expect(embedField(reply, 'Size')).toBe('128x64');
    // The PNG keeps the prompt as typed (weights included), so AUTOMATIC1111 weighs it the same way.
    expect(parseParameters(readPngParameters(reply.attachments[0].data) ?? '')).toMatchObject({ prompt: 'a (red:1.2) fox', negativePrompt: 'ugly, blurry', width: 128, height: 64 });
  });

  it('rerolls a prompt with weights, escapes and BREAK exactly as typed', async () => {
    harness = await start();
    const prompt = String.raw`\(a\) [[fox]] BREAK (snow:0.8), *bold* _x_`;
    const original = await harness.finalReply(harness.imagine('alice', { prompt, seed: 2 }));
    const reroll = harness.fake.clickButton({ messageId: original.id, customId: 'imagine:reroll', user: harness.fake.user('bob') });
    const rerolled = await harness.finalReply(reroll);
    expect(parseParameters(readPngParameters(rerolled.attachments[0].data) ?? '').prompt).toBe(prompt);
    expect(rerolled.embeds[0].description).toBe(original.embeds[0].description);
  });

  it('refuses a malformed parameter or weight at once, saying what is wrong', async () => {
    harness = await start();
    expect(await harness.refusal(harness.imagine('alice', { prompt: 'a fox --ar 16-9' }))).toBe('⚠️ --ar must look like 16:9, whole numbers from 1 to 100 (got "16-9").');
    expect(await harness.refusal(harness.imagine('alice', { prompt: 'a fox --v 6' }))).toMatch(/^⚠️ --v is not a parameter this bot knows \(supported: --ar W:H/);
    expect(await harness.refusal(harness.imagine('alice', { prompt: 'a (fox:1.2.3)' }))).toBe(
      '⚠️ The prompt has a malformed weight: "1.2.3" in "(…:1.2.3)" is not a weight; write a number such as 1.2.',
    );
  });

  it('reads brackets as text when the operator turns the syntax off', async () => {
    harness = await start({ PROMPT_SYNTAX: 'plain' });
    const reply = await harness.finalReply(harness.imagine('alice', { prompt: 'a (fox:1.2.3)', seed: 1 }));
    expect(reply.embeds[0].description).toBe('a (fox:1.2.3)');
  });

  it('refuses a prompt longer than 8 chunks of 75 tokens at once, before it is queued', async () => {
    harness = await start();
    expect(await harness.refusal(harness.imagine('alice', { prompt: '1'.repeat(700) }))).toBe(
      '⚠️ The prompt is 700 tokens long (10 chunks); at most 600 fit (8 chunks of 75). Shorten it.',
    );
  });

  it('uses an embedding by name and shows it in the embed', async () => {
    harness = await start();
    const reply = await harness.finalReply(harness.imagine('alice', { prompt: 'a mystyle fox', seed: 3 }));
    expect(embedField(reply, 'Embeddings')).toBe('mystyle');
    const plain = await harness.finalReply(harness.imagine('bob', { prompt: 'a fox', seed: 3 }));
    expect(embedField(plain, 'Embeddings')).toBeUndefined();
  });

  it('/embeddings lists the installed embeddings by family and what it cannot use', async () => {
    harness = await start();
    const handle = harness.fake.sendCommand({ name: 'embeddings', user: harness.fake.user('alice') });
    const content = await harness.refusal(handle);
    expect(content).toContain('**SD 1.x**: `EasyNegative` (8 vectors)');
    expect(content).toContain('**32-wide**: `mystyle` (2 vectors)');
    expect(content).toMatch(/Not usable: `old\.pt`: not a \.safetensors file/);
  });
});
