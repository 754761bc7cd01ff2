import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeTextEncoder, writeUNet, writeVae } from '../graphs/components.ts';
import { resolveAutoencoderKLConfig, resolveAutoencoderTinyConfig, resolveClipTextConfig, resolveUnetConfig } from '../graphs/configs.ts';
import type { Precision } from '../graphs/onnx-graph.ts';
import { SD1_SCHEDULER, jsonFile, onnxPipelineIndex } from '../graphs/stable-diffusion.ts';
import type { TimestepShape, TimestepType } from '../graphs/unet-2d-condition.ts';
import { RandomWeights, componentSeed } from '../graphs/weights.ts';
import { PROJECT_ROOT } from '../runtime.ts';
import { END_OF_TEXT, type PadToken, buildTokenizer } from './tokenizer.ts';

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

/**
 * The tiny model's architecture: Stable Diffusion's, a few channels wide and two levels deep, with its attention
 * (self and over the text) in the mid block only, so the many tests that load it stay quick.
 */
export const TINY_UNET = {
  sample_size: 32,
  in_channels: 4,
  out_channels: 4,
  down_block_types: ['DownBlock2D', 'DownBlock2D'],
  up_block_types: ['UpBlock2D', 'UpBlock2D'],
  block_out_channels: [16, 32],
  layers_per_block: 1,
  attention_head_dim: 2,
  cross_attention_dim: 32,
  norm_num_groups: 8,
};

export const TINY_VAE = {
  _class_name: 'AutoencoderKL',
  block_out_channels: [4, 8, 16, 16],
  down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D'],
  up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D'],
  layers_per_block: 1,
  latent_channels: 4,
  norm_num_groups: 4,
  sample_size: 256,
  scaling_factor: 0.18215,
  // The attention over every latent pixel would dominate a tiny decoder's time at 512x512.
  mid_block_add_attention: false,
};

/** A tiny decoder (TAESD's architecture, AutoencoderTiny) for the tiny model's latents: its blocks a few channels wide. */
export const TINY_TAESD = {
  encoder_block_out_channels: [8, 8, 8, 8],
  decoder_block_out_channels: [8, 8, 8, 8],
  num_encoder_blocks: [1, 1, 1, 1],
  num_decoder_blocks: [1, 1, 1, 1],
};

/** Sharper, louder cross-attention, so the prompt visibly changes the tiny model's image (as the reference fixtures do). */
const UNET_GAINS = { 'attn2.to_k.weight': 4, 'attn2.to_out.0.weight': 10 };
/** Random decoder weights would leave many pixels outside [-1, 1]; a quieter last conv keeps the image mostly inside. */
const VAE_GAINS = { 'decoder.conv_out.weight': 0.13, 'decoder.conv_out.bias': 0.13 };

function tinyTextEncoder(vocabSize: number) {
  return {
    architectures: ['CLIPTextModel'],
    vocab_size: vocabSize,
    hidden_size: 32,
    intermediate_size: 64,
    projection_dim: 32,
    num_hidden_layers: 2,
    num_attention_heads: 2,
    max_position_embeddings: 77,
    hidden_act: 'quick_gelu',
    // The tiny vocabulary ends with the end-of-text token, so CLIP's legacy rule (the largest id) finds it.
    eos_token_id: 2,
  };
}

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
  const schedulerConfig = { ...SD1_SCHEDULER, ...scheduler };
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

/**
 * Writes a complete diffusers-layout ONNX Stable Diffusion directory: the graph builder's Stable Diffusion
 * architecture at a few channels, with random weights and a tiny tokenizer.
 */
export async function writeTinyModel(dir: string, options: TinyModelOptions = {}): Promise<void> {
  const settings = resolveOptions(options);
  const tokenizer = buildTokenizer(settings.padToken);
  const component = (name: string, gains?: Record<string, number>) => ({
    precision: settings.precision,
    // Unfused, as hub exports are: the tests exercise the pipeline's load-time fusion on this model.
    attention: 'unfused' as const,
    weights: new RandomWeights(componentSeed(settings.seed, name), gains),
  });

  await writeTextEncoder(join(dir, 'text_encoder'), resolveClipTextConfig(tinyTextEncoder(tokenizer.vocab.size)), {
    ...component('text_encoder'),
    inputIdsType: settings.inputIdsType,
  });
  await writeUNet(join(dir, 'unet'), resolveUnetConfig(TINY_UNET), {
    ...component('unet', UNET_GAINS),
    externalDataFile: settings.unetExternalData || undefined,
    timestepType: settings.timestepType,
    timestepShape: settings.timestepShape,
  });
  await writeVae(dir, resolveAutoencoderKLConfig(TINY_VAE), component('vae', VAE_GAINS));

  const schedulerClass = settings.schedulerConfig._class_name;
  const files: Record<string, string> = {
    // The pipeline recognises the tiny model by this key (TINY_MODEL_MARKER in src/pipeline/model-config.ts).
    'model_index.json': jsonFile(onnxPipelineIndex(schedulerClass, ['text_encoder', 'unet', 'vae_decoder', 'vae_encoder'], { _imagine_bot_tiny: true })),
    'scheduler/scheduler_config.json': jsonFile(settings.schedulerConfig),
  };
  for (const [name, contents] of Object.entries(tokenizer.files)) files[`tokenizer/${name}`] = contents;
  for (const [relativePath, contents] of Object.entries(files)) {
    const path = join(dir, relativePath);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, contents);
  }
}

/** Writes a VAE folder with TINY_TAESD's graphs and random weights: what the tests install as a tiny decoder. */
export async function writeTinyTaesd(dir: string, seed = DEFAULT_SEED): Promise<void> {
  await writeVae(dir, resolveAutoencoderTinyConfig(TINY_TAESD), { precision: 'fp32', attention: 'unfused', weights: new RandomWeights(componentSeed(seed, 'taesd')) });
}

const moduleDir = dirname(fileURLToPath(import.meta.url));
const STAMP_FILE = 'tiny-model-stamp.txt';

/**
 * Changes whenever this generator's or the graph builder's source changes, so a cached model never outlives the code
 * that made it. In a checkout the build in dist/ reads the same source files, so both stamp the model alike.
 */
async function generatorFingerprint(): Promise<string> {
  const hash = createHash('sha256');
  const sourceDir = join(PROJECT_ROOT, 'src');
  const codeDir = existsSync(join(sourceDir, 'tiny-model')) ? sourceDir : resolve(moduleDir, '..');
  for (const dir of [join(codeDir, 'tiny-model'), join(codeDir, 'graphs')]) {
    for (const name of (await readdir(dir)).filter((file) => /\.[jt]s$/.test(file)).sort()) {
      hash.update(name).update(await readFile(join(dir, name)));
    }
  }
  return hash.digest('hex');
}

/**
 * Writes the default fp32 tiny model to `dir` (default `<repo>/models/.tiny`) unless an up-to-date copy is
 * already there; returns the directory. Safe to call from parallel test workers: each writes a private copy
 * and renames it into place.
 */
export async function ensureTinyModel(dir: string = join(PROJECT_ROOT, 'models', '.tiny')): Promise<string> {
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
