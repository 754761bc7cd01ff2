import { mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { embeddingsForContext, scanEmbeddings } from '../src/models/embeddings.ts';
import { StableDiffusionPipeline } from '../src/pipeline/pipeline.ts';
import { PromptEncoder } from '../src/pipeline/prompt-encoder.ts';
import { TextEncoder } from '../src/pipeline/text-encoder.ts';
import { ClipTokenizer } from '../src/pipeline/tokenizer.ts';
import { tokenSummary, viewTokens } from '../src/prompt/token-view.ts';
import { writeTinyModel } from '../src/tiny-model/index.ts';
import { pixelDifference } from './fixtures.ts';
import { safetensorsBytes } from './safetensors-file.ts';

const { onnx } = onnxProto;
const SMALL = { width: 32, height: 32, steps: 2, seed: 5, guidanceScale: 7.5 };
const root = mkdtempSync(join(tmpdir(), 'imagine-prompts-'));
const modelDir = join(root, 'tiny');
const embeddingsDir = join(root, 'embeddings');
const clock = { runMs: 0 };

let tokenizer: ClipTokenizer;
let textEncoder: TextEncoder;
let pipeline: StableDiffusionPipeline;
/** The tiny text encoder's token-embedding table [vocab, width]. */
let table: { width: number; rows: Float32Array };

function tokenRows(ids: number[]): Float32Array {
  const out = new Float32Array(ids.length * table.width);
  ids.forEach((id, index) => out.set(table.rows.subarray(id * table.width, (id + 1) * table.width), index * table.width));
  return out;
}

const meanAbsDifference = (a: ArrayLike<number>, b: ArrayLike<number>) => pixelDifference(a, b).mean;

beforeAll(async () => {
  await writeTinyModel(modelDir);
  mkdirSync(embeddingsDir);
  tokenizer = await ClipTokenizer.fromDirectory(join(modelDir, 'tokenizer'));
  textEncoder = await TextEncoder.load(modelDir, { executionProvider: 'cpu', clock, fuseAttention: false });
  const model = onnx.ModelProto.decode(readFileSync(join(modelDir, 'text_encoder', 'model.onnx')));
  const tensor = model.graph!.initializer!.find((candidate) => candidate.name?.includes('token_embedding'))!;
  const raw = tensor.rawData!;
  table = { width: Number(tensor.dims![1]), rows: new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength)) };
  // "mything" stands for "red dog": its two vectors are those words' token embeddings.
  const redDog = tokenizer.tokenize('red dog');
  writeFileSync(join(embeddingsDir, 'mything.safetensors'), safetensorsBytes({ emb_params: { dtype: 'F32', shape: [2, table.width], values: tokenRows(redDog) } }));
  // Trained for a wider text encoder: not usable with this model, so its name stays text.
  writeFileSync(join(embeddingsDir, 'wide.safetensors'), safetensorsBytes({ emb_params: { dtype: 'F32', shape: [1, 768], values: new Float32Array(768) } }));
  pipeline = await StableDiffusionPipeline.fromPretrained(modelDir, { embeddingsDir });
});

afterAll(async () => {
  await Promise.all([textEncoder?.release(), pipeline?.release()]);
  rmSync(root, { recursive: true, force: true });
});

describe('text encoder with token-embedding overrides', () => {
  it('gives the exported graph’s output bit for bit where nothing is overridden', async () => {
    const ids = tokenizer.encode('a dog wearing hat');
    const session = await ort.InferenceSession.create(join(modelDir, 'text_encoder', 'model.onnx'));
    try {
      expect(session.inputNames).toEqual(['input_ids']);
      const reference = await session.run({ input_ids: new ort.Tensor('int32', Int32Array.from(ids), [1, 77]) });
      const ours = await textEncoder.encode(ids);
      expect(textEncoder.tokenVectorWidth).toBe(table.width);
      expect(ours.data).toEqual(reference.last_hidden_state.data);
    } finally {
      await session.release();
    }
  });

  it('puts vectors in place of token embeddings: the table’s own rows give the words’ output exactly', async () => {
    const [red, dog] = tokenizer.tokenize('red dog');
    const words = await textEncoder.encode(tokenizer.encode('a red dog'));
    const placeholders = tokenizer.encode('a ! !');
    expect(placeholders.slice(2, 4)).not.toEqual([red, dog]);
    const replaced = await textEncoder.encode(placeholders, [{ offset: 2, vectors: tokenRows([red, dog]) }]);
    expect(replaced.data).toEqual(words.data);
    const unreplaced = await textEncoder.encode(placeholders);
    expect(meanAbsDifference(unreplaced.data, words.data)).toBeGreaterThan(1e-3);
  });

  it('refuses vectors that do not fit', async () => {
    await expect(textEncoder.encode(tokenizer.encode('a'), [{ offset: 76, vectors: new Float32Array(2 * table.width) }])).rejects.toThrow(/within 77 tokens/);
  });

  it.each([['fp16'], ['int64 ids']])('is added to the %s tiny model too', async (variant) => {
    const dir = join(root, variant.replace(' ', '-'));
    await writeTinyModel(dir, variant === 'fp16' ? { precision: 'fp16' } : { inputIdsType: 'int64' });
    const encoder = await TextEncoder.load(dir, { executionProvider: 'cpu', clock, fuseAttention: false, float32OnCpu: false });
    try {
      const ids = tokenizer.encode('a red dog');
      const [red, dog] = tokenizer.tokenize('red dog');
      const words = await encoder.encode(ids);
      const replaced = await encoder.encode(tokenizer.encode('a ! !'), [{ offset: 2, vectors: tokenRows([red, dog]) }]);
      // fp16: the table's fp32 rows round to the same halves the graph holds.
      expect(replaced.data).toEqual(words.data);
    } finally {
      await encoder.release();
    }
  });
});

describe('StableDiffusionPipeline with AUTOMATIC1111 prompts', () => {
  it('gives a plain prompt of up to 75 tokens the same image with the syntax on or off', async () => {
    for (const prompt of ['a dog wearing hat', `${'red '.repeat(74)}cat`]) {
      const a1111 = await pipeline.generate({ prompt, negativePrompt: 'blurry', ...SMALL });
      const plain = await pipeline.generate({ prompt, negativePrompt: 'blurry', promptSyntax: 'plain', ...SMALL });
      expect(a1111.image.pixels).toEqual(plain.image.pixels);
    }
  });

  it('pads with "!" after the end token for an SD 2.x-style tokenizer, as diffusers does', async () => {
    const dir = join(root, 'pad-bang');
    await writeTinyModel(dir, { padToken: '!' });
    const sd2 = await StableDiffusionPipeline.fromPretrained(dir);
    try {
      const a1111 = await sd2.generate({ prompt: 'a dog wearing hat', ...SMALL });
      const plain = await sd2.generate({ prompt: 'a dog wearing hat', promptSyntax: 'plain', ...SMALL });
      expect(a1111.image.pixels).toEqual(plain.image.pixels);
    } finally {
      await sd2.release();
    }
  });

  it('weights words: (dog:1.5) changes the image, (dog:1) does not, plain syntax reads the brackets as text', async () => {
    const base = await pipeline.generate({ prompt: 'a dog wearing hat', ...SMALL });
    const unit = await pipeline.generate({ prompt: 'a (dog:1) wearing hat', ...SMALL });
    const weighted = await pipeline.generate({ prompt: 'a (dog:1.5) wearing hat', ...SMALL });
    const literal = await pipeline.generate({ prompt: 'a (dog:1.5) wearing hat', promptSyntax: 'plain', ...SMALL });
    expect(unit.image.pixels).toEqual(base.image.pixels);
    expect(meanAbsDifference(weighted.image.pixels, base.image.pixels)).toBeGreaterThan(0.5);
    expect(meanAbsDifference(literal.image.pixels, weighted.image.pixels)).toBeGreaterThan(0.5);
  });

  it('encodes a long prompt in chunks (the U-Net attends to 154 tokens) where plain syntax cuts it at 75', async () => {
    const prompt = `${'red '.repeat(75)}dog`;
    const long = await pipeline.generate({ prompt, ...SMALL });
    const cut = await pipeline.generate({ prompt, promptSyntax: 'plain', ...SMALL });
    const truncated = await pipeline.generate({ prompt: 'red '.repeat(75), ...SMALL });
    expect(cut.image.pixels).toEqual(truncated.image.pixels);
    expect(meanAbsDifference(long.image.pixels, cut.image.pixels)).toBeGreaterThan(0.5);
  });

  it('starts a new chunk at BREAK', async () => {
    const broken = await pipeline.generate({ prompt: 'a dog BREAK wearing hat', ...SMALL });
    const together = await pipeline.generate({ prompt: 'a dog wearing hat', ...SMALL });
    expect(meanAbsDifference(broken.image.pixels, together.image.pixels)).toBeGreaterThan(0.5);
  });

  it('refuses a prompt beyond 8 chunks and a malformed weight, saying why', async () => {
    await expect(pipeline.generate({ prompt: 'red '.repeat(601), ...SMALL })).rejects.toThrow(
      'The prompt is 601 tokens long (9 chunks); at most 600 fit (8 chunks of 75). Shorten it.',
    );
    await expect(pipeline.generate({ prompt: 'dog', negativePrompt: '(blurry:1.2.3)', ...SMALL })).rejects.toThrow(/negative prompt has a malformed weight: "1\.2\.3"/);
  });

  it('takes conditioning made elsewhere, as diffusers takes prompt_embeds', async () => {
    const prompt = await textEncoder.encode(tokenizer.encode('a dog wearing hat'));
    const negative = await textEncoder.encode(tokenizer.encode(''));
    const given = await pipeline.generate({ prompt: 'a dog wearing hat', ...SMALL, promptEmbeds: { prompt: prompt.data, negative: negative.data, width: prompt.width } });
    const encoded = await pipeline.generate({ prompt: 'a dog wearing hat', ...SMALL });
    expect(given.image.pixels).toEqual(encoded.image.pixels);
    const swapped = await pipeline.generate({ prompt: 'a dog wearing hat', ...SMALL, promptEmbeds: { prompt: negative.data, negative: prompt.data, width: prompt.width } });
    expect(meanAbsDifference(swapped.image.pixels, encoded.image.pixels)).toBeGreaterThan(0.5);
  });

  it('keeps to one chunk when the U-Net was exported for a 77-token context only', async () => {
    const dir = join(root, 'fixed-context');
    await writeTinyModel(dir);
    const unetPath = join(dir, 'unet', 'model.onnx');
    const unet = onnx.ModelProto.decode(readFileSync(unetPath));
    const context = unet.graph!.input!.find((input) => input.name === 'encoder_hidden_states')!;
    context.type!.tensorType!.shape!.dim![1] = { dimValue: 77 };
    writeFileSync(unetPath, onnx.ModelProto.encode(unet).finish());
    const fixed = await StableDiffusionPipeline.fromPretrained(dir);
    try {
      await expect(fixed.generate({ prompt: 'red '.repeat(76), ...SMALL })).rejects.toThrow('The prompt is 76 tokens long (2 chunks); at most 75 fit (this model takes one chunk). Shorten it.');
      const short = await fixed.generate({ prompt: 'red '.repeat(75), ...SMALL });
      const same = await pipeline.generate({ prompt: 'red '.repeat(75), ...SMALL });
      expect(short.image.pixels).toEqual(same.image.pixels);
    } finally {
      await fixed.release();
    }
  });

  it('uses an embedding by name: its vectors stand in for the words they were made from', async () => {
    const embedded = await pipeline.generate({ prompt: 'a mything wearing hat', ...SMALL });
    const words = await pipeline.generate({ prompt: 'a red dog wearing hat', ...SMALL });
    const unmatched = await pipeline.generate({ prompt: 'a mything wearing hat', promptSyntax: 'plain', ...SMALL });
    expect(embedded.image.pixels).toEqual(words.image.pixels);
    expect(embedded.settings.embeddings).toEqual(['mything']);
    expect(words.settings.embeddings).toBeUndefined();
    expect(meanAbsDifference(unmatched.image.pixels, words.image.pixels)).toBeGreaterThan(0.5);
  });

  it('leaves an embedding of another width as text, and reads embeddings added while it runs', async () => {
    const wide = await pipeline.generate({ prompt: 'wide', ...SMALL });
    expect(wide.settings.embeddings).toBeUndefined();
    writeFileSync(join(embeddingsDir, 'later.safetensors'), safetensorsBytes({ emb_params: { dtype: 'F32', shape: [1, table.width], values: tokenRows(tokenizer.tokenize('cat')) } }));
    const later = new Date(Date.now() + 5000);
    utimesSync(embeddingsDir, later, later);
    const viaEmbedding = await pipeline.generate({ prompt: 'a later', negativePrompt: 'later', ...SMALL });
    const viaWord = await pipeline.generate({ prompt: 'a cat', negativePrompt: 'cat', ...SMALL });
    expect(viaEmbedding.image.pixels).toEqual(viaWord.image.pixels);
    expect(viaEmbedding.settings.embeddings).toEqual(['later']);
  });
});

describe('the token view with embeddings', () => {
  /** A folder of its own: "mything" as above (2 vectors), "bigthing" of 6 vectors, "wide" for another text encoder. */
  async function usableEmbeddings() {
    const dir = join(root, 'view-embeddings');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'mything.safetensors'), safetensorsBytes({ emb_params: { dtype: 'F32', shape: [2, table.width], values: new Float32Array(2 * table.width) } }));
    writeFileSync(join(dir, 'bigthing.safetensors'), safetensorsBytes({ emb_params: { dtype: 'F32', shape: [6, table.width], values: new Float32Array(6 * table.width) } }));
    writeFileSync(join(dir, 'wide.safetensors'), safetensorsBytes({ emb_params: { dtype: 'F32', shape: [1, 768], values: new Float32Array(768) } }));
    const { embeddings } = await scanEmbeddings(dir);
    return { all: embeddings, usable: embeddingsForContext(embeddings, pipeline.info.textContextWidth) };
  }

  it('takes the embeddings the pipeline takes, each in as many positions as it has vectors, as the text encoder gets them', async () => {
    const { all, usable } = await usableEmbeddings();
    expect(usable.map((embedding) => embedding.name).sort()).toEqual(['bigthing', 'mything']);
    const encoder = new PromptEncoder([{ tokenizer, textEncoder }], 8);
    encoder.useEmbeddings(all);
    for (const prompt of ['a mything wearing (hat:1.2), bigthing', 'wide bigthing BREAK mything', `${'red '.repeat(72)}bigthing`]) {
      const view = viewTokens(prompt, 'a1111', tokenizer, 8, usable);
      const encoded = encoder.tokenize(prompt, 'a1111', 'prompt');
      expect(view.chunks).toHaveLength(encoded.chunks.length);
      view.chunks.forEach((chunk, index) => {
        const expected = encoded.chunks[index];
        expect([view.start.id, ...chunk.tokens.map((token) => token.id), view.end.id]).toEqual(expected.tokens.slice(0, chunk.tokens.length + 2));
        expect(chunk.tokens.map((token) => token.weight)).toEqual(expected.multipliers.slice(1, chunk.tokens.length + 1));
        const starts = chunk.tokens.flatMap((token, position) => (token.embedding?.vector === 1 ? [{ offset: position + 1, name: token.token, vectors: token.embedding.vectors }] : []));
        expect(starts).toEqual(expected.embeddings.map(({ offset, embedding }) => ({ offset, name: embedding.name, vectors: embedding.vectorCount })));
      });
    }
    const view = viewTokens('a mything wearing hat', 'a1111', tokenizer, 8, usable);
    expect(view.chunks[0].tokens.map((token) => (token.embedding ? `${token.token} ${token.embedding.vector}/${token.embedding.vectors}` : token.token))).toEqual([
      'a</w>',
      'mything 1/2',
      'mything 2/2',
      'wearing</w>',
      'hat</w>',
    ]);
    expect(tokenSummary(view)).toBe('5 tokens of 75 · AUTOMATIC1111 syntax · embedding mything (2 vectors)');
  });

  it('counts their vectors against the limit, as the pipeline refuses the prompt', async () => {
    const { all, usable } = await usableEmbeddings();
    // 72 words and 6 vectors: over one chunk, and the embedding's vectors stay together in the next one.
    const prompt = `${'red '.repeat(72)}bigthing`;
    const view = viewTokens(prompt, 'a1111', tokenizer, 1, usable);
    expect(view.chunks.map((chunk) => chunk.tokens.length)).toEqual([72, 6]);
    expect(view.problem).toBe('The prompt is 81 tokens long (2 chunks); at most 75 fit (this model takes one chunk). Shorten it.');
    const oneChunk = new PromptEncoder([{ tokenizer, textEncoder }], 1);
    oneChunk.useEmbeddings(all);
    expect(() => oneChunk.tokenize(prompt, 'a1111', 'prompt')).toThrow(view.problem);
    // The plain syntax reads names as words, as diffusers does.
    expect(viewTokens('a mything', 'plain', tokenizer, 8, usable).embeddings).toEqual([]);
  });
});
