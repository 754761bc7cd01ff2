import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DIFFUSERS_VERSION, SD15_SCHEDULER, jsonFile, onnxPipelineIndex } from './diffusers-layout.ts';
import { encodeModel, type Precision } from './graph.ts';
import { componentSeed, mulberry32 } from './random.ts';
import { TEXT_ENCODER, buildTextEncoder } from './text-encoder.ts';
import { END_OF_TEXT, type PadToken, buildTokenizer } from './tokenizer.ts';
import { type TimestepShape, type TimestepType, UNET, buildUnet } from './unet.ts';
import { VAE_DECODER, buildVaeDecoder } from './vae-decoder.ts';

export type ExternalDataName = 'weights.pb' | 'model.onnx_data' | 'model.onnx.data';

export interface TinyModelOptions {
  /** fp16: every weight and every float input/output is float16, as in Optimum's fp16 exports. */
  precision?: Precision;
  /** Put the U-Net's initializers in this file beside unet/model.onnx (ONNX external data). */
  unetExternalData?: false | ExternalDataName;
  /** int32 like diffusers' ONNX converter (default), int64 like Optimum. */
  inputIdsType?: 'int32' | 'int64';
  timestepType?: TimestepType;
  /** [] (Optimum), [1], or [batch] (diffusers' converter, default). */
  timestepShape?: TimestepShape;
  /** Shallow-merged over SD 1.5's PNDM scheduler_config.json. */
  scheduler?: Record<string, unknown>;
  /** SD 1.x pads with end-of-text, SD 2.x with "!". */
  padToken?: PadToken;
  seed?: number;
}

const DEFAULT_SEED = 20240601;

function oneOf<T extends string | boolean>(name: string, value: T | undefined, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if (!allowed.includes(value)) {
    throw new Error(`tiny model option ${name} must be one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}; got ${JSON.stringify(value)}`);
  }
  return value;
}

function resolveOptions(options: TinyModelOptions) {
  const seed = options.seed ?? DEFAULT_SEED;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new Error(`tiny model option seed must be an integer in 0..4294967295; got ${options.seed}`);
  }
  const scheduler = options.scheduler ?? {};
  if (typeof scheduler !== 'object' || scheduler === null || Array.isArray(scheduler)) {
    throw new Error('tiny model option scheduler must be an object of scheduler_config.json fields');
  }
  const schedulerConfig = { ...SD15_SCHEDULER, ...scheduler };
  if (typeof schedulerConfig._class_name !== 'string' || schedulerConfig._class_name === '') {
    throw new Error('tiny model option scheduler._class_name must be a scheduler class name');
  }
  return {
    seed,
    schedulerConfig,
    precision: oneOf('precision', options.precision, ['fp32', 'fp16'] as const, 'fp32'),
    unetExternalData: oneOf<false | ExternalDataName>(
      'unetExternalData',
      options.unetExternalData,
      [false, 'weights.pb', 'model.onnx_data', 'model.onnx.data'],
      false,
    ),
    inputIdsType: oneOf('inputIdsType', options.inputIdsType, ['int32', 'int64'] as const, 'int32'),
    timestepType: oneOf('timestepType', options.timestepType, ['float32', 'float16', 'int64'] as const, 'float32'),
    timestepShape: oneOf('timestepShape', options.timestepShape, ['scalar', 'one', 'batch'] as const, 'batch'),
    padToken: oneOf('padToken', options.padToken, [END_OF_TEXT, '!'] as const, END_OF_TEXT),
  };
}

/** Writes a complete diffusers-layout ONNX Stable Diffusion directory with tiny random weights. */
export async function writeTinyModel(dir: string, options: TinyModelOptions = {}): Promise<void> {
  const settings = resolveOptions(options);
  const randomFor = (component: string) => mulberry32(componentSeed(settings.seed, component));
  const tokenizer = buildTokenizer(settings.padToken);

  const textEncoder = encodeModel(
    buildTextEncoder({
      precision: settings.precision,
      random: randomFor('text_encoder'),
      vocabSize: tokenizer.vocab.size,
      inputIdsType: settings.inputIdsType,
    }),
  );
  const unet = encodeModel(
    buildUnet({
      precision: settings.precision,
      random: randomFor('unet'),
      timestepType: settings.timestepType,
      timestepShape: settings.timestepShape,
    }),
    settings.unetExternalData || undefined,
  );
  const vaeDecoder = encodeModel(buildVaeDecoder({ precision: settings.precision, random: randomFor('vae_decoder') }));

  const schedulerClass = settings.schedulerConfig._class_name;
  const files: Record<string, string | Uint8Array> = {
    // The pipeline recognises the tiny model by this key (TINY_MODEL_MARKER in src/pipeline/model-config.ts).
    'model_index.json': jsonFile(onnxPipelineIndex(schedulerClass, { _imagine_bot_tiny: true })),
    'scheduler/scheduler_config.json': jsonFile(settings.schedulerConfig),
    'text_encoder/model.onnx': textEncoder.model,
    'text_encoder/config.json': jsonFile({
      _name_or_path: 'imagine-bot/tiny-clip',
      architectures: ['CLIPTextModel'],
      hidden_act: 'quick_gelu',
      hidden_size: TEXT_ENCODER.hiddenSize,
      intermediate_size: TEXT_ENCODER.intermediateSize,
      max_position_embeddings: TEXT_ENCODER.maxPositions,
      model_type: 'clip_text_model',
      num_attention_heads: TEXT_ENCODER.heads,
      num_hidden_layers: TEXT_ENCODER.layers,
      torch_dtype: settings.precision === 'fp16' ? 'float16' : 'float32',
      vocab_size: tokenizer.vocab.size,
    }),
    'unet/model.onnx': unet.model,
    'unet/config.json': jsonFile({
      _class_name: 'UNet2DConditionModel',
      _diffusers_version: DIFFUSERS_VERSION,
      attention_head_dim: UNET.blockOutChannels.map((channels) => channels / UNET.attentionHeads),
      block_out_channels: UNET.blockOutChannels,
      cross_attention_dim: UNET.crossAttentionDim,
      flip_sin_to_cos: true,
      freq_shift: 0,
      in_channels: UNET.inChannels,
      layers_per_block: 1,
      norm_num_groups: UNET.groups,
      out_channels: UNET.outChannels,
      sample_size: UNET.sampleSize,
    }),
    'vae_decoder/model.onnx': vaeDecoder.model,
    'vae_decoder/config.json': jsonFile({
      _class_name: 'AutoencoderKL',
      _diffusers_version: DIFFUSERS_VERSION,
      block_out_channels: VAE_DECODER.blockOutChannels,
      latent_channels: VAE_DECODER.latentChannels,
      norm_num_groups: VAE_DECODER.groups,
      out_channels: VAE_DECODER.outChannels,
      sample_size: UNET.sampleSize * 8,
      scaling_factor: VAE_DECODER.scalingFactor,
    }),
  };
  if (settings.unetExternalData && unet.externalData) files[`unet/${settings.unetExternalData}`] = unet.externalData;
  for (const [name, contents] of Object.entries(tokenizer.files)) files[`tokenizer/${name}`] = contents;

  for (const [relativePath, contents] of Object.entries(files)) {
    const path = join(dir, relativePath);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, contents);
  }
}

const moduleDir = dirname(fileURLToPath(import.meta.url));
const STAMP_FILE = 'tiny-model-stamp.txt';

/** Changes whenever this generator's source changes, so a cached model never outlives the code that made it. */
async function generatorFingerprint(): Promise<string> {
  const hash = createHash('sha256');
  for (const name of (await readdir(moduleDir)).filter((file) => file.endsWith('.ts')).sort()) {
    hash.update(name).update(await readFile(join(moduleDir, name)));
  }
  return hash.digest('hex');
}

/**
 * Writes the default fp32 tiny model to `dir` (default `<repo>/models/.tiny`) unless an up-to-date copy is
 * already there; returns the directory. Safe to call from parallel test workers: each writes a private copy
 * and renames it into place.
 */
export async function ensureTinyModel(dir: string = resolve(moduleDir, '..', '..', 'models', '.tiny')): Promise<string> {
  const fingerprint = await generatorFingerprint();
  const stampPath = join(dir, STAMP_FILE);
  const isCurrent = async () => existsSync(stampPath) && (await readFile(stampPath, 'utf8')) === fingerprint;
  if (await isCurrent()) return dir;

  const unique = `${process.pid}-${randomBytes(4).toString('hex')}`;
  const staging = `${dir}.staging-${unique}`;
  await writeTinyModel(staging);
  await writeFile(join(staging, STAMP_FILE), fingerprint);
  if (existsSync(dir) && !(await isCurrent())) {
    // Move the outdated copy aside rather than deleting it in place, so the rename below stays atomic.
    const retired = `${dir}.retired-${unique}`;
    await rename(dir, retired).then(
      () => rm(retired, { recursive: true, force: true }),
      (error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENOENT') throw error;
      },
    );
  }
  try {
    await rename(staging, dir);
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    // Another worker renamed its identical copy into place first.
    if (!(await isCurrent())) throw error;
  }
  return dir;
}
