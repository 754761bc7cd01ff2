import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { float16ToFloat32, float32ToFloat16 } from '../src/pipeline/float16.ts';
import { type TinyModelOptions, ensureTinyModel, writeTinyModel } from '../src/tiny-model/index.ts';
import { fixturesPresent, maxAbsDiff, readFixtureJson } from './fixtures.ts';

/** Largest output difference allowed between fp16 and fp32 models; observed ≈ 0.0025 on O(1) outputs. */
const FP16_TOLERANCE = 0.01;

let root: string;
const written = new Map<string, Promise<string>>();

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'tiny-model-test-'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Writes each distinct option set once per run. */
function model(options: TinyModelOptions = {}): Promise<string> {
  const key = JSON.stringify(options);
  let dir = written.get(key);
  if (!dir) {
    const path = join(root, `m${written.size}`);
    dir = writeTinyModel(path, options).then(() => path);
    written.set(key, dir);
  }
  return dir;
}

async function session(dir: string, component: string, file = 'model.onnx'): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(join(dir, component, file), { intraOpNumThreads: 1 });
}

function metadata(values: readonly ort.InferenceSession.ValueMetadata[]) {
  return values.map((value) => {
    if (!value.isTensor) throw new Error(`${value.name} is not a tensor`);
    return { name: value.name, type: value.type, shape: [...value.shape] };
  });
}

async function readJson(...parts: string[]): Promise<any> {
  return JSON.parse(await readFile(join(...parts), 'utf8'));
}

/** Deterministic pseudo-random floats in [-scale, scale] for inputs. */
function pseudoRandom(length: number, salt: number, scale = 1): Float32Array {
  let state = salt >>> 0;
  return Float32Array.from({ length }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return (state / 2 ** 32 - 0.5) * 2 * scale;
  });
}

function floatTensor(values: Float32Array, dims: number[], type: 'float32' | 'float16'): ort.Tensor {
  if (type === 'float32') return new ort.Tensor('float32', values, dims);
  return new ort.Tensor('float16', float32ToFloat16(values), dims);
}

/** fp16 rounding of the inputs, so fp32 and fp16 models see the very same values. */
function roundedToHalf(values: Float32Array): Float32Array {
  return float16ToFloat32(float32ToFloat16(values));
}

function floats(tensor: ort.OnnxValue): Float32Array {
  const value = tensor as ort.Tensor;
  if (value.type === 'float32') return value.data as Float32Array;
  if (value.type === 'float16') return float16ToFloat32(value.data as Uint16Array);
  throw new Error(`expected a float tensor, got ${value.type}`);
}

function allFinite(values: Float32Array): boolean {
  return values.every(Number.isFinite);
}

function standardDeviation(values: Float32Array): number {
  const mean = values.reduce((sum, x) => sum + x, 0) / values.length;
  return Math.sqrt(values.reduce((sum, x) => sum + (x - mean) ** 2, 0) / values.length);
}

async function vocabulary(dir: string): Promise<Record<string, number>> {
  return readJson(dir, 'tokenizer', 'vocab.json');
}

/** CLIP's BPE on one lower-case word, from merges.txt ranks (the algorithm of CLIP's simple_tokenizer). */
function clipBpe(word: string, ranks: Map<string, number>): string[] {
  const symbols = [...word];
  symbols[symbols.length - 1] += '</w>';
  for (;;) {
    let best = -1;
    let bestRank = Infinity;
    for (let i = 0; i + 1 < symbols.length; i++) {
      const rank = ranks.get(`${symbols[i]} ${symbols[i + 1]}`);
      if (rank !== undefined && rank < bestRank) {
        bestRank = rank;
        best = i;
      }
    }
    if (best < 0) return symbols;
    const [left, right] = [symbols[best], symbols[best + 1]];
    for (let i = 0; i + 1 < symbols.length; i++) {
      if (symbols[i] === left && symbols[i + 1] === right) symbols.splice(i, 2, left + right);
    }
  }
}

async function mergeLines(dir: string): Promise<string[]> {
  return (await readFile(join(dir, 'tokenizer', 'merges.txt'), 'utf8')).trim().split('\n');
}

/** `<|startoftext|> words… <|endoftext|>` padded to 77 with `pad`, one row per prompt. */
async function encodePrompts(dir: string, prompts: string[][], pad = '<|endoftext|>'): Promise<Int32Array> {
  const vocab = await vocabulary(dir);
  const ranks = new Map((await mergeLines(dir)).slice(1).map((line, rank) => [line, rank]));
  const ids = new Int32Array(prompts.length * 77).fill(vocab[pad]);
  prompts.forEach((words, row) => {
    const tokens = ['<|startoftext|>', ...words.flatMap((word) => clipBpe(word, ranks)), '<|endoftext|>'];
    tokens.forEach((token, column) => {
      ids[row * 77 + column] = vocab[token];
    });
  });
  return ids;
}

describe('tiny tokenizer', () => {
  it('lays the vocabulary out as CLIP does: byte symbols, the same with </w>, merges, then the two specials', async () => {
    const vocab = await vocabulary(await model());
    const ids = Object.values(vocab).sort((a, b) => a - b);
    expect(ids).toEqual(ids.map((_, i) => i));
    expect(vocab['!']).toBe(0);
    expect(vocab['~']).toBe(93);
    expect(vocab['Ā']).toBe(188);
    expect(vocab['Ġ']).toBe(220);
    expect(vocab['!</w>']).toBe(256);
    expect(vocab['<|startoftext|>']).toBe(ids.length - 2);
    expect(vocab['<|endoftext|>']).toBe(ids.length - 1);
    expect(ids.length).toBeGreaterThan(512 + 200);
    expect(ids.length).toBeLessThan(5000);
  });

  it.runIf(fixturesPresent)("gives the 512 byte symbols the ids of OpenAI CLIP's vocabulary", async () => {
    const clip = readFixtureJson<Record<string, number>>('tokenizer', 'vocab.json');
    const tiny = await vocabulary(await model());
    const clipBase = Object.entries(clip).filter(([, id]) => id < 512);
    expect(clipBase).toHaveLength(512);
    for (const [token, id] of clipBase) expect(tiny[token]).toBe(id);
  });

  it('has a merges.txt whose every merge yields a later vocabulary entry', async () => {
    const dir = await model();
    const vocab = await vocabulary(dir);
    const lines = await mergeLines(dir);
    expect(lines[0]).toBe('#version: 0.2');
    expect(lines.length - 1).toBeGreaterThanOrEqual(200);
    for (const line of lines.slice(1)) {
      const [left, right, extra] = line.split(' ');
      expect(extra).toBeUndefined();
      expect(vocab[left + right]).toBeGreaterThan(Math.max(vocab[left], vocab[right]));
    }
  });

  it('tokenizes prompt words to single tokens and other words to known pieces with CLIP BPE', async () => {
    const dir = await model();
    const vocab = await vocabulary(dir);
    const ranks = new Map((await mergeLines(dir)).slice(1).map((line, rank) => [line, rank]));
    for (const word of ['a', 'dog', 'cat', 'red', 'hat', 'fox', 'of', 'the', 'photo', 'astronaut']) {
      expect(clipBpe(word, ranks)).toEqual([`${word}</w>`]);
    }
    const pieces = clipBpe('zebras', ranks);
    expect(pieces.length).toBeGreaterThan(1);
    expect(pieces.join('')).toBe('zebras</w>');
    for (const piece of pieces) expect(vocab[piece]).toBeTypeOf('number');
  });

  it('writes the config files SD 1.x ships, padding with <|endoftext|>', async () => {
    const dir = await model();
    const config = await readJson(dir, 'tokenizer', 'tokenizer_config.json');
    expect(config).toMatchObject({ tokenizer_class: 'CLIPTokenizer', model_max_length: 77, do_lower_case: true, pad_token: '<|endoftext|>' });
    expect(config.bos_token.content).toBe('<|startoftext|>');
    expect(config.eos_token.content).toBe('<|endoftext|>');
    const specials = await readJson(dir, 'tokenizer', 'special_tokens_map.json');
    expect(specials).toMatchObject({ pad_token: '<|endoftext|>', bos_token: { content: '<|startoftext|>' }, eos_token: { content: '<|endoftext|>' } });
  });

  it('pads with "!" (id 0) when asked, as SD 2.x does', async () => {
    const dir = await model({ padToken: '!' });
    expect((await readJson(dir, 'tokenizer', 'tokenizer_config.json')).pad_token).toBe('!');
    expect((await readJson(dir, 'tokenizer', 'special_tokens_map.json')).pad_token).toBe('!');
    expect((await vocabulary(dir))['!']).toBe(0);
  });
});

describe('tiny model directory', () => {
  it('has the diffusers ONNX layout and model_index.json', async () => {
    const dir = await model();
    expect((await readdir(dir)).sort()).toEqual(['model_index.json', 'scheduler', 'text_encoder', 'tokenizer', 'unet', 'vae_decoder', 'vae_encoder']);
    expect((await readdir(join(dir, 'tokenizer'))).sort()).toEqual(['merges.txt', 'special_tokens_map.json', 'tokenizer_config.json', 'vocab.json']);
    expect(await readJson(dir, 'model_index.json')).toMatchObject({
      _class_name: 'OnnxStableDiffusionPipeline',
      _diffusers_version: expect.any(String),
      _imagine_bot_tiny: true,
      scheduler: ['diffusers', 'PNDMScheduler'],
      text_encoder: ['diffusers', 'OnnxRuntimeModel'],
      tokenizer: ['transformers', 'CLIPTokenizer'],
      unet: ['diffusers', 'OnnxRuntimeModel'],
      vae_decoder: ['diffusers', 'OnnxRuntimeModel'],
      vae_encoder: ['diffusers', 'OnnxRuntimeModel'],
    });
  });

  it("uses SD 1.5's PNDM scheduler config by default", async () => {
    expect(await readJson(await model(), 'scheduler', 'scheduler_config.json')).toMatchObject({
      _class_name: 'PNDMScheduler',
      num_train_timesteps: 1000,
      beta_start: 0.00085,
      beta_end: 0.012,
      beta_schedule: 'scaled_linear',
      steps_offset: 1,
      set_alpha_to_one: false,
      skip_prk_steps: true,
      clip_sample: false,
      prediction_type: 'epsilon',
    });
  });

  it('merges a scheduler override over that config and names its class in model_index.json', async () => {
    const dir = await model({ scheduler: { _class_name: 'EulerDiscreteScheduler', timestep_spacing: 'trailing' } });
    expect(await readJson(dir, 'scheduler', 'scheduler_config.json')).toMatchObject({
      _class_name: 'EulerDiscreteScheduler',
      timestep_spacing: 'trailing',
      beta_schedule: 'scaled_linear',
      num_train_timesteps: 1000,
    });
    expect((await readJson(dir, 'model_index.json')).scheduler).toEqual(['diffusers', 'EulerDiscreteScheduler']);
  });

  it('describes sizes in the component configs', async () => {
    const dir = await model();
    const unet = await readJson(dir, 'unet', 'config.json');
    expect(unet.sample_size).toBe(32);
    expect(unet.block_out_channels).toHaveLength(2);
    const vae = await readJson(dir, 'vae_decoder', 'config.json');
    expect(vae.scaling_factor).toBe(0.18215);
    expect(vae.block_out_channels).toHaveLength(4);
    const textEncoder = await readJson(dir, 'text_encoder', 'config.json');
    expect(textEncoder.hidden_size).toBe(32);
    expect(textEncoder.vocab_size).toBe(Object.keys(await vocabulary(dir)).length);
  });

  it('is byte-for-byte reproducible from the seed, and another seed gives other weights', async () => {
    const dir = await model();
    const again = join(root, 'again');
    const started = performance.now();
    await writeTinyModel(again);
    const elapsedMs = performance.now() - started;
    expect(elapsedMs).toBeLessThan(3000);
    for (const component of ['text_encoder', 'unet', 'vae_decoder']) {
      const [first, second] = await Promise.all([readFile(join(again, component, 'model.onnx')), readFile(join(dir, component, 'model.onnx'))]);
      expect(first.equals(second)).toBe(true);
    }
    const other = await model({ seed: 7 });
    const [seven, standard] = await Promise.all([readFile(join(other, 'unet', 'model.onnx')), readFile(join(dir, 'unet', 'model.onnx'))]);
    expect(seven.length).toBe(standard.length);
    expect(seven.equals(standard)).toBe(false);
  });

  it.each<[TinyModelOptions, RegExp]>([
    [{ precision: 'fp8' as never }, /precision must be one of "fp32", "fp16"; got "fp8"/],
    [{ timestepShape: 'vector' as never }, /timestepShape must be one of/],
    [{ unetExternalData: 'weights.bin' as never }, /unetExternalData must be one of/],
    [{ seed: -1 }, /seed must be an integer/],
    [{ scheduler: [] as never }, /scheduler must be an object/],
  ])('rejects bad options: %j', async (options, message) => {
    await expect(writeTinyModel(join(root, 'rejected'), options)).rejects.toThrow(message);
  });
});

describe('tiny text encoder', () => {
  it('declares the inputs and outputs of a diffusers export', async () => {
    const encoder = await session(await model(), 'text_encoder');
    expect(metadata(encoder.inputMetadata)).toEqual([{ name: 'input_ids', type: 'int32', shape: ['batch', 'sequence'] }]);
    expect(metadata(encoder.outputMetadata)).toEqual([
      { name: 'last_hidden_state', type: 'float32', shape: ['batch', 'sequence', 32] },
      { name: 'pooler_output', type: 'float32', shape: ['batch', 32] },
    ]);
  });

  it('encodes a batch; the pooled output is the hidden state at the end-of-text token', async () => {
    const dir = await model();
    const encoder = await session(dir, 'text_encoder');
    const ids = await encodePrompts(dir, [['a', 'red', 'dog'], ['a', 'fox', 'in', 'a', 'hat']]);
    const output = await encoder.run({ input_ids: new ort.Tensor('int32', ids, [2, 77]) });
    expect(output.last_hidden_state.dims).toEqual([2, 77, 32]);
    expect(output.pooler_output.dims).toEqual([2, 32]);
    const hidden = floats(output.last_hidden_state);
    const pooled = floats(output.pooler_output);
    expect(allFinite(hidden)).toBe(true);
    expect(standardDeviation(hidden)).toBeGreaterThan(0.3);
    const endOfText = (await vocabulary(dir))['<|endoftext|>'];
    for (const row of [0, 1]) {
      const position = ids.subarray(row * 77, row * 77 + 77).indexOf(endOfText);
      expect(position).toBe(row === 0 ? 4 : 6);
      const at = hidden.subarray((row * 77 + position) * 32, (row * 77 + position + 1) * 32);
      expect(maxAbsDiff(pooled.subarray(row * 32, row * 32 + 32), at)).toBe(0);
    }
  });

  it('is causal: a later token does not change earlier positions', async () => {
    const dir = await model();
    const encoder = await session(dir, 'text_encoder');
    const ids = await encodePrompts(dir, [['a', 'red', 'dog', 'on', 'the', 'sea'], ['a', 'red', 'dog', 'on', 'the', 'moon']]);
    const hidden = floats((await encoder.run({ input_ids: new ort.Tensor('int32', ids, [2, 77]) })).last_hidden_state);
    const position = (row: number, index: number) => hidden.subarray((row * 77 + index) * 32, (row * 77 + index + 1) * 32);
    for (let index = 0; index < 6; index++) expect(maxAbsDiff(position(0, index), position(1, index))).toBeLessThan(1e-6);
    for (let index = 6; index < 77; index++) expect(maxAbsDiff(position(0, index), position(1, index))).toBeGreaterThan(1e-3);
  });

  it('encodes shorter sequences too, matching the first positions of a full-length run', async () => {
    const dir = await model();
    const encoder = await session(dir, 'text_encoder');
    const full = await encodePrompts(dir, [['a', 'dog', 'in', 'a', 'red', 'hat']]);
    const fullHidden = floats((await encoder.run({ input_ids: new ort.Tensor('int32', full, [1, 77]) })).last_hidden_state);
    const short = await encoder.run({ input_ids: new ort.Tensor('int32', full.slice(0, 10), [1, 10]) });
    expect(short.last_hidden_state.dims).toEqual([1, 10, 32]);
    expect(maxAbsDiff(floats(short.last_hidden_state), fullHidden.subarray(0, 10 * 32))).toBeLessThan(1e-5);
  });

  it('takes int64 ids when asked (Optimum) and gives the same result', async () => {
    const dir = await model();
    const wide = await session(await model({ inputIdsType: 'int64' }), 'text_encoder');
    expect(metadata(wide.inputMetadata)[0]).toEqual({ name: 'input_ids', type: 'int64', shape: ['batch', 'sequence'] });
    const ids = await encodePrompts(dir, [['a', 'cat', 'wearing', 'a', 'hat']]);
    const narrow = await session(dir, 'text_encoder');
    const expected = floats((await narrow.run({ input_ids: new ort.Tensor('int32', ids, [1, 77]) })).last_hidden_state);
    const actual = floats((await wide.run({ input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [1, 77]) })).last_hidden_state);
    expect(maxAbsDiff(actual, expected)).toBe(0);
  });
});

const LATENT_DIMS = [2, 4, 8, 8];
const latentInput = pseudoRandom(2 * 4 * 8 * 8, 1);
const textInput = pseudoRandom(2 * 77 * 32, 2);

async function runUnet(unet: ort.InferenceSession, timestep: ort.Tensor, latents = latentInput, text = textInput): Promise<Float32Array> {
  const output = await unet.run({
    sample: new ort.Tensor('float32', latents, LATENT_DIMS),
    timestep,
    encoder_hidden_states: new ort.Tensor('float32', text, [2, 77, 32]),
  });
  expect(output.out_sample.dims).toEqual(LATENT_DIMS);
  return floats(output.out_sample);
}

const float32Timestep = (values: number[], dims = [values.length]) => new ort.Tensor('float32', Float32Array.from(values), dims);

describe('tiny U-Net', () => {
  it('declares the inputs and outputs of a diffusers export', async () => {
    const unet = await session(await model(), 'unet');
    expect(metadata(unet.inputMetadata)).toEqual([
      { name: 'sample', type: 'float32', shape: ['batch', 'channels', 'height', 'width'] },
      { name: 'timestep', type: 'float32', shape: ['batch'] },
      { name: 'encoder_hidden_states', type: 'float32', shape: ['batch', 'sequence', 32] },
    ]);
    expect(metadata(unet.outputMetadata).map(({ name, type }) => ({ name, type }))).toEqual([{ name: 'out_sample', type: 'float32' }]);
  });

  it('predicts finite, varied noise that depends on the timestep and on the text', async () => {
    const unet = await session(await model(), 'unet');
    const late = await runUnet(unet, float32Timestep([999, 999]));
    expect(allFinite(late)).toBe(true);
    expect(standardDeviation(late)).toBeGreaterThan(0.05);
    expect(maxAbsDiff(await runUnet(unet, float32Timestep([500, 500])), late)).toBeGreaterThan(1e-2);
    expect(maxAbsDiff(await runUnet(unet, float32Timestep([999, 999]), latentInput, pseudoRandom(textInput.length, 3)), late)).toBeGreaterThan(1e-2);
  });

  it('broadcasts a [1] timestep over the batch (as diffusers passes it)', async () => {
    const unet = await session(await model(), 'unet');
    expect(maxAbsDiff(await runUnet(unet, float32Timestep([999])), await runUnet(unet, float32Timestep([999, 999])))).toBeLessThan(1e-6);
  });

  it('accepts a latent of any even size, e.g. 64×64 (512×512 images), with batch 2', async () => {
    const unet = await session(await model(), 'unet');
    const output = await unet.run({
      sample: new ort.Tensor('float32', pseudoRandom(2 * 4 * 64 * 64, 4), [2, 4, 64, 64]),
      timestep: float32Timestep([1]),
      encoder_hidden_states: new ort.Tensor('float32', textInput, [2, 77, 32]),
    });
    expect(output.out_sample.dims).toEqual([2, 4, 64, 64]);
    expect(allFinite(floats(output.out_sample))).toBe(true);
  });
});

describe('tiny VAE decoder', () => {
  it('declares the inputs and outputs of a diffusers export', async () => {
    const vae = await session(await model(), 'vae_decoder');
    expect(metadata(vae.inputMetadata)).toEqual([{ name: 'latent_sample', type: 'float32', shape: ['batch', 'channels', 'height', 'width'] }]);
    expect(metadata(vae.outputMetadata).map(({ name, type, shape }) => ({ name, type, channels: shape[1] }))).toEqual([
      { name: 'sample', type: 'float32', channels: 3 },
    ]);
  });

  it('decodes 8× larger RGB in [-1, 1] without clipping most pixels, even from large latents', async () => {
    const vae = await session(await model(), 'vae_decoder');
    for (const scale of [1, 1 / 0.18215]) {
      const output = await vae.run({ latent_sample: new ort.Tensor('float32', pseudoRandom(4 * 12 * 8, 5, scale), [1, 4, 12, 8]) });
      expect(output.sample.dims).toEqual([1, 3, 96, 64]);
      const image = floats(output.sample);
      expect(image.every((x) => x >= -1 && x <= 1)).toBe(true);
      expect(image.filter((x) => Math.abs(x) > 0.98).length / image.length).toBeLessThan(0.2);
      expect(standardDeviation(image)).toBeGreaterThan(0.1);
    }
  });
});

describe('tiny U-Net with external data', () => {
  it.each(['weights.pb', 'model.onnx_data', 'model.onnx.data'] as const)(
    'keeps the weights in unet/%s and computes exactly what the inline model does',
    async (location) => {
      const dir = await model({ unetExternalData: location });
      const graphSize = (await stat(join(dir, 'unet', 'model.onnx'))).size;
      const dataSize = (await stat(join(dir, 'unet', location))).size;
      const inlineSize = (await stat(join(await model(), 'unet', 'model.onnx'))).size;
      expect(graphSize).toBeLessThan(dataSize / 10);
      expect(dataSize).toBeGreaterThan(inlineSize * 0.9);
      const external = await runUnet(await session(dir, 'unet'), float32Timestep([999, 999]));
      const inline = await runUnet(await session(await model(), 'unet'), float32Timestep([999, 999]));
      expect(maxAbsDiff(external, inline)).toBe(0);
    },
  );
});

describe('tiny fp16 model', () => {
  const fp16Options: TinyModelOptions = { precision: 'fp16', timestepType: 'float16' };

  it('declares float16 for every float input and output', async () => {
    const dir = await model(fp16Options);
    const floatTypes = async (component: string) => {
      const loaded = await session(dir, component);
      return [...metadata(loaded.inputMetadata), ...metadata(loaded.outputMetadata)].filter(({ type }) => type.startsWith('float')).map(({ type }) => type);
    };
    expect(await floatTypes('text_encoder')).toEqual(['float16', 'float16']);
    expect(await floatTypes('unet')).toEqual(['float16', 'float16', 'float16', 'float16']);
    expect(await floatTypes('vae_decoder')).toEqual(['float16', 'float16']);
  });

  it('stores the fp32 weights rounded to float16', async () => {
    const { FLOAT, FLOAT16 } = onnxProto.onnx.TensorProto.DataType;
    const initializers = async (dir: string) => {
      const decoded = onnxProto.onnx.ModelProto.decode(await readFile(join(dir, 'unet', 'model.onnx')));
      return new Map((decoded.graph?.initializer ?? []).map((tensor) => [tensor.name ?? '', tensor]));
    };
    const bytes = (data: Uint8Array | null | undefined) => Uint8Array.from(data ?? []).buffer;
    const [single, half] = await Promise.all([initializers(await model()), initializers(await model(fp16Options))]);
    expect([...half.keys()]).toEqual([...single.keys()]);
    let rounded = 0;
    for (const [name, tensor] of single) {
      if (tensor.dataType !== FLOAT) continue;
      const counterpart = half.get(name);
      const values = new Float32Array(bytes(tensor.rawData));
      if (counterpart?.dataType === FLOAT16) {
        expect(Buffer.from(bytes(counterpart.rawData)).equals(Buffer.from(float32ToFloat16(values).buffer))).toBe(true);
        rounded++;
      } else {
        // Float32 constants that feed the float32 timestep embedding, the group norms or Resize scales.
        expect(Buffer.from(bytes(counterpart?.rawData)).equals(Buffer.from(values.buffer))).toBe(true);
      }
    }
    expect(rounded).toBeGreaterThan(40);
  });

  it('computes what the fp32 model computes, within float16 precision', async () => {
    const single = await model();
    const half = await model(fp16Options);
    const ids = await encodePrompts(single, [['a', 'red', 'fox'], ['a', 'blue', 'cat']]);
    const idsTensor = new ort.Tensor('int32', ids, [2, 77]);
    const textSingle = floats((await (await session(single, 'text_encoder')).run({ input_ids: idsTensor })).last_hidden_state);
    const textHalf = floats((await (await session(half, 'text_encoder')).run({ input_ids: idsTensor })).last_hidden_state);
    expect(maxAbsDiff(textHalf, textSingle)).toBeLessThan(FP16_TOLERANCE);

    const latents = roundedToHalf(latentInput);
    const text = roundedToHalf(textSingle);
    const noiseSingle = await runUnet(await session(single, 'unet'), float32Timestep([999, 999]), latents, text);
    const halfUnet = await session(half, 'unet');
    const halfOutput = await halfUnet.run({
      sample: floatTensor(latents, LATENT_DIMS, 'float16'),
      timestep: floatTensor(Float32Array.of(999, 999), [2], 'float16'),
      encoder_hidden_states: floatTensor(text, [2, 77, 32], 'float16'),
    });
    expect(maxAbsDiff(floats(halfOutput.out_sample), noiseSingle)).toBeLessThan(FP16_TOLERANCE);

    const imageSingle = floats((await (await session(single, 'vae_decoder')).run({ latent_sample: new ort.Tensor('float32', latents, LATENT_DIMS) })).sample);
    const imageHalf = floats((await (await session(half, 'vae_decoder')).run({ latent_sample: floatTensor(latents, LATENT_DIMS, 'float16') })).sample);
    expect(maxAbsDiff(imageHalf, imageSingle)).toBeLessThan(FP16_TOLERANCE);
  });
});

describe('tiny model export variants', () => {
  const timestepValues = { float32: (dims: number[]) => new ort.Tensor('float32', new Float32Array([999]), dims),
    float16: (dims: number[]) => new ort.Tensor('float16', float32ToFloat16([999]), dims),
    int64: (dims: number[]) => new ort.Tensor('int64', new BigInt64Array([999n]), dims) };
  const timestepDims = { scalar: [], one: [1], batch: [1] } as const;

  const cases: Array<[NonNullable<TinyModelOptions['timestepType']>, NonNullable<TinyModelOptions['timestepShape']>, 'fp32' | 'fp16']> = [];
  for (const type of ['float32', 'float16', 'int64'] as const) {
    for (const shape of ['scalar', 'one', 'batch'] as const) {
      for (const precision of ['fp32', 'fp16'] as const) cases.push([type, shape, precision]);
    }
  }

  it.each(cases)('a %s timestep of shape %s (%s) loads and matches the default export', async (timestepType, timestepShape, precision) => {
    const dir = await model({ timestepType, timestepShape, precision, inputIdsType: 'int64' });
    const unet = await session(dir, 'unet');
    const declared = metadata(unet.inputMetadata)[1];
    expect(declared).toEqual({ name: 'timestep', type: timestepType, shape: { scalar: [], one: [1], batch: ['batch'] }[timestepShape] });
    const floatType = precision === 'fp16' ? 'float16' : 'float32';
    const latents = roundedToHalf(latentInput);
    const text = roundedToHalf(textInput);
    const output = await unet.run({
      sample: floatTensor(latents, LATENT_DIMS, floatType),
      timestep: timestepValues[timestepType]([...timestepDims[timestepShape]]),
      encoder_hidden_states: floatTensor(text, [2, 77, 32], floatType),
    });
    expect(output.out_sample.dims).toEqual(LATENT_DIMS);
    const reference = await runUnet(await session(await model(), 'unet'), float32Timestep([999]), latents, text);
    expect(maxAbsDiff(floats(output.out_sample), reference)).toBeLessThan(precision === 'fp16' ? FP16_TOLERANCE : 1e-5);

    const encoder = await session(dir, 'text_encoder');
    const ids = BigInt64Array.from(await encodePrompts(dir, [['a', 'dog']]), BigInt);
    const encoded = await encoder.run({ input_ids: new ort.Tensor('int64', ids, [1, 77]) });
    expect(allFinite(floats(encoded.last_hidden_state))).toBe(true);
  });
});

describe('ensureTinyModel', () => {
  it('writes the model once, reuses it, and rewrites a copy made by other generator code', async () => {
    const dir = join(root, 'cache', '.tiny');
    const results = await Promise.all([ensureTinyModel(dir), ensureTinyModel(dir), ensureTinyModel(dir)]);
    expect(results).toEqual([dir, dir, dir]);
    expect(existsSync(join(dir, 'unet', 'model.onnx'))).toBe(true);
    expect(await readdir(join(root, 'cache'))).toEqual(['.tiny']);

    const sentinel = join(dir, 'sentinel');
    await writeFile(sentinel, 'kept while the model is current');
    await ensureTinyModel(dir);
    expect(existsSync(sentinel)).toBe(true);

    await writeFile(join(dir, 'tiny-model-stamp.txt'), 'generator of long ago');
    await ensureTinyModel(dir);
    expect(existsSync(sentinel)).toBe(false);
    const [cached, fresh] = await Promise.all([readFile(join(dir, 'unet', 'model.onnx')), readFile(join(await model(), 'unet', 'model.onnx'))]);
    expect(cached.equals(fresh)).toBe(true);
  });
});
