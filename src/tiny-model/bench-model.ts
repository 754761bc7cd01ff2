import { existsSync } from 'node:fs';
import { copyFile, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeTextEncoder, writeUNet, writeVae } from '../graphs/components.ts';
import { type ConfigJson, resolveAutoencoderKLConfig, resolveAutoencoderTinyConfig, resolveClipTextConfig, resolveUnetConfig } from '../graphs/configs.ts';
import type { AttentionKind, Precision } from '../graphs/onnx-graph.ts';
import { type ComponentName, SD1_SCHEDULER, SD1_TEXT_ENCODER, SD1_UNET, SD2_TEXT_ENCODER, SD2_UNET, SD_VAE, jsonFile, onnxPipelineIndex } from '../graphs/stable-diffusion.ts';
import { SDXL_SCHEDULER, SDXL_TEXT_ENCODER, SDXL_TEXT_ENCODER_2, SDXL_UNET, SDXL_VAE } from '../graphs/stable-diffusion-xl.ts';
import { RandomWeights, componentSeed } from '../graphs/weights.ts';
import { EXTERNAL_DATA_FILE, type WrittenGraph } from '../graphs/write-graph.ts';
import { FUSED_ATTENTION_MARKER } from '../pipeline/model-config.ts';
import { LCM_DEFAULTS } from '../schedulers/lcm.ts';
import { END_OF_TEXT, type PadToken, buildTokenizer } from './tokenizer.ts';

/** The config.json of each part, in diffusers' / transformers' form. */
export interface BenchModelConfigs {
  textEncoder: ConfigJson;
  /** SDXL's second text encoder: with it the model is an SDXL pipeline (tokenizer_2). */
  textEncoder2?: ConfigJson;
  unet: ConfigJson;
  vae: ConfigJson;
  scheduler: ConfigJson;
}

/** Stable Diffusion 1.5's architecture: 1.07 billion parameters, 4.3 GB in fp32. */
export const SD15_CONFIGS: BenchModelConfigs = { textEncoder: SD1_TEXT_ENCODER, unet: SD1_UNET, vae: SD_VAE, scheduler: SD1_SCHEDULER };

/** LCM Dreamshaper v7's: SD 1.5's with the guidance embedding (time_cond_proj_dim 256) and the LCM scheduler. */
export const LCM_CONFIGS: BenchModelConfigs = {
  ...SD15_CONFIGS,
  unet: { ...SD1_UNET, time_cond_proj_dim: 256 },
  scheduler: { _class_name: 'LCMScheduler', ...LCM_DEFAULTS },
};

/**
 * SD-Turbo's architecture (stabilityai/sd-turbo: SD 2.1 at 512x512, OpenCLIP ViT-H's text model, 64-wide heads,
 * linear projections) with its trailing Euler scheduler, which the pipeline runs in 1 step without guidance.
 */
export const SD_TURBO_CONFIGS: BenchModelConfigs = {
  textEncoder: SD2_TEXT_ENCODER,
  unet: { ...SD2_UNET, sample_size: 64, upcast_attention: false },
  vae: SD_VAE,
  scheduler: { ...SD1_SCHEDULER, _class_name: 'EulerDiscreteScheduler', timestep_spacing: 'trailing' },
};

/** Stable Diffusion XL base's architecture: 3.47 billion parameters (U-Net 2.57), 13.9 GB in fp32. */
export const SDXL_CONFIGS: BenchModelConfigs = {
  textEncoder: SDXL_TEXT_ENCODER,
  textEncoder2: SDXL_TEXT_ENCODER_2,
  unet: SDXL_UNET,
  vae: SDXL_VAE,
  scheduler: SDXL_SCHEDULER,
};

export interface BenchModelOptions {
  precision?: Precision;
  /** How attention is written (default unfused, as hub exports are; the pipeline fuses it at load on the CPU). */
  attention?: AttentionKind;
  /** Defaults to SD 1.5's (SDXL_CONFIGS: SDXL's); smaller ones make the same architecture quick to test. */
  configs?: BenchModelConfigs;
  /** A folder with CLIP's vocab.json and merges.txt (e.g. a real model's tokenizer/); else the tiny tokenizer. */
  tokenizerDir?: string;
  seed?: number;
  /** Called as each part is about to be written (it can take a minute for the U-Net). */
  onPart?: (part: string) => void;
}

export interface BenchModelSummary {
  parameters: Partial<Record<Part, number>>;
  /** Bytes of model.onnx + external data, all parts together. */
  bytes: number;
}

const DEFAULT_SEED = 15;
type Part = 'text_encoder' | 'text_encoder_2' | 'unet' | 'vae';

/**
 * Writes a diffusers-layout ONNX model with Stable Diffusion 1.5's (or SDXL's) architecture and widths and random weights
 * (the graph builder that imports real checkpoints, fed random values), so timings reflect the real model's cost
 * (it draws noise). Every graph keeps its weights in model.onnx_data beside model.onnx, written as they are
 * drawn. The folder appears only once complete.
 */
export async function writeBenchModel(dir: string, options: BenchModelOptions = {}): Promise<BenchModelSummary> {
  const precision = options.precision ?? 'fp32';
  const configs = options.configs ?? SD15_CONFIGS;
  const seed = options.seed ?? DEFAULT_SEED;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new Error(`bench model seed must be an integer in 0..4294967295; got ${seed}`);
  if (existsSync(dir)) throw new Error(`${dir} already exists; remove it first`);

  const staging = `${dir}.partial-${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  try {
    const common = (part: Part) => ({
      precision,
      attention: options.attention ?? 'unfused',
      weights: new RandomWeights(componentSeed(seed, part)),
      externalDataFile: EXTERNAL_DATA_FILE,
    });
    // SDXL conditions on both text encoders' penultimate layer; its VAE overflows in float16 (force_upcast), as imports keep it fp32.
    const xl = configs.textEncoder2 !== undefined;
    const textEncoder = (part: 'text_encoder' | 'text_encoder_2', config: ConfigJson) => () =>
      writeTextEncoder(join(staging, part), resolveClipTextConfig(config), { ...common(part), inputIdsType: 'int32', penultimateHiddenState: xl });
    const vaeConfig = resolveAutoencoderKLConfig(configs.vae);
    const writers: Partial<Record<Part, () => Promise<WrittenGraph>>> = {
      text_encoder: textEncoder('text_encoder', configs.textEncoder),
      ...(configs.textEncoder2 ? { text_encoder_2: textEncoder('text_encoder_2', configs.textEncoder2) } : {}),
      unet: () => writeUNet(join(staging, 'unet'), resolveUnetConfig(configs.unet), { ...common('unet'), timestepType: 'float32', timestepShape: 'batch' }),
      vae: () => writeVae(staging, vaeConfig, { ...common('vae'), ...(xl && vaeConfig.force_upcast ? { precision: 'fp32' as const } : {}) }),
    };
    const parameters: BenchModelSummary['parameters'] = {};
    let bytes = 0;
    for (const [part, write] of Object.entries(writers) as [Part, () => Promise<WrittenGraph>][]) {
      options.onPart?.(part);
      const written = await write();
      parameters[part] = written.parameters;
      bytes += written.bytes;
    }
    await writeConfigs(staging, configs, options.tokenizerDir, options.attention === 'fused');
    await rename(staging, dir);
    return { parameters, bytes };
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
}

/**
 * Writes a VAE folder (vae_decoder/, vae_encoder/) with TAESD's architecture (diffusers' AutoencoderTiny defaults,
 * 2.4 million parameters) and random weights: what a tiny decoder costs, to measure beside a benchmark model.
 */
export async function writeBenchTinyVae(dir: string, seed = DEFAULT_SEED): Promise<WrittenGraph> {
  if (existsSync(dir)) throw new Error(`${dir} already exists; remove it first`);
  const staging = `${dir}.partial-${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  try {
    const written = await writeVae(staging, resolveAutoencoderTinyConfig({}), {
      precision: 'fp32',
      attention: 'unfused',
      weights: new RandomWeights(componentSeed(seed, 'vae')),
      externalDataFile: EXTERNAL_DATA_FILE,
    });
    await rename(staging, dir);
    return written;
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
}

async function writeConfigs(dir: string, configs: BenchModelConfigs, tokenizerDir: string | undefined, builtFused: boolean): Promise<void> {
  const xl = configs.textEncoder2 !== undefined;
  const vocabSize = Number(configs.textEncoder.vocab_size);
  const tinyVocabSize = buildTokenizer(END_OF_TEXT).vocab.size;
  if (!tokenizerDir && tinyVocabSize > vocabSize) {
    throw new Error(`the text encoder's vocabulary (${vocabSize}) is smaller than the tiny tokenizer's (${tinyVocabSize})`);
  }
  const components: ComponentName[] = ['text_encoder', ...(xl ? ['text_encoder_2' as const] : []), 'unet', 'vae_decoder', 'vae_encoder'];
  const markers = { ...(xl ? { force_zeros_for_empty_prompt: true } : {}), ...(builtFused ? { [FUSED_ATTENTION_MARKER]: true } : {}) };
  await mkdir(join(dir, 'scheduler'), { recursive: true });
  await writeFile(join(dir, 'model_index.json'), jsonFile(onnxPipelineIndex(String(configs.scheduler._class_name), components, markers)));
  await writeFile(join(dir, 'scheduler', 'scheduler_config.json'), jsonFile(configs.scheduler));
  await writeTokenizer(join(dir, 'tokenizer'), END_OF_TEXT, tokenizerDir);
  // SDXL's second tokenizer: the same vocabulary, padding with "!".
  if (xl) await writeTokenizer(join(dir, 'tokenizer_2'), '!', tokenizerDir);
}

/** A tokenizer folder: CLIP's vocabulary from `tokenizerDir` when given, else the tiny tokenizer's; configs for `padToken`. */
async function writeTokenizer(dir: string, padToken: PadToken, tokenizerDir: string | undefined): Promise<void> {
  const tokenizer = buildTokenizer(padToken);
  await mkdir(dir, { recursive: true });
  for (const [name, contents] of Object.entries(tokenizer.files)) {
    if (tokenizerDir && (name === 'vocab.json' || name === 'merges.txt')) continue;
    await writeFile(join(dir, name), contents);
  }
  if (tokenizerDir) {
    for (const name of ['vocab.json', 'merges.txt']) {
      const source = join(tokenizerDir, name);
      if (!existsSync(source)) throw new Error(`tokenizer folder ${tokenizerDir} has no ${name}`);
      await copyFile(source, join(dir, name));
    }
  }
}
