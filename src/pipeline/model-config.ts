import { existsSync, readFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { CHUNK_LENGTH } from '../prompt/chunker.ts';
import { MAX_PROMPT_CHUNKS } from '../prompt/prompt-tokens.ts';
import { LCM_DEFAULTS } from '../schedulers/lcm.ts';
import { schedulerDisplayName } from '../schedulers/index.ts';
import type { ModelInfo } from './types.ts';
import type { LatentSize } from './unet.ts';

/** The parts of a diffusers ONNX model directory that are plain JSON, read and checked before any session loads. */
export interface ModelConfig {
  dir: string;
  name: string;
  schedulerConfig: Record<string, unknown>;
  /** unet/config.json when the exporter wrote one (Optimum does; diffusers' converter does not). */
  unetConfig: Record<string, unknown> | undefined;
  isTiny: boolean;
  /** Where the model came from, as far as its files tell: the folder name, the pulled repo id, the exporter's source. */
  origins: string[];
  /** model:import's record, for an imported model. */
  imported: ImportManifest | undefined;
  /** The graphs were written with attention already fused for the CPU (nothing to rewrite at load). */
  builtFused: boolean;
  /** Set for an SDXL model (two text encoders): whether an empty negative prompt is zeros rather than encoded. */
  sdxl: { forceZerosForEmptyPrompt: boolean } | undefined;
}

/** What the pipeline cannot start without (vae_encoder is optional: only img2img would use it). */
export const REQUIRED_MODEL_FILES: readonly string[] = [
  'model_index.json',
  'scheduler/scheduler_config.json',
  'tokenizer/vocab.json',
  'tokenizer/merges.txt',
  'text_encoder/model.onnx',
  'unet/model.onnx',
  'vae_decoder/model.onnx',
];

/** What an SDXL model needs besides: the second text encoder and its tokenizer. */
export const SDXL_MODEL_FILES: readonly string[] = ['text_encoder_2/model.onnx', 'tokenizer_2/vocab.json', 'tokenizer_2/merges.txt'];

/** What `npm run model:pull` writes beside a pulled model (repo id, revision, commit). */
export const PULL_MANIFEST_FILE = '.pull-manifest.json';

/** What `npm run model:import` writes beside an imported model (its source, precision, VAE and LoRAs). */
export const IMPORT_MANIFEST_FILE = '.import-manifest.json';

export interface ImportManifest {
  /** The SOURCE given to the import (a path or a hub repository). */
  source: string;
  /** Where a downloaded source came from. */
  origin?: { repo: string; revision: string; subfolder?: string; commit?: string };
  description: string;
  kind: 'pipeline' | 'vae';
  precision: 'fp32' | 'fp16';
  attention: 'fused' | 'unfused';
  prediction?: string;
  vae?: { source: string; description: string };
  loras: { name: string; weight: number }[];
  importedAt: string;
}

/** Marks, in model_index.json, graphs the project's builder wrote with attention already fused. */
export const FUSED_ATTENTION_MARKER = '_imagine_bot_fused_attention';

/** Marks the generated tiny model in its model_index.json (see src/tiny-model). */
export const TINY_MODEL_MARKER = '_imagine_bot_tiny';

export function readModelConfig(dir: string): ModelConfig {
  const modelDir = resolve(dir);
  if (!existsSync(modelDir)) throw new Error(`Model directory ${modelDir} does not exist`);
  const modelIndex = existsSync(join(modelDir, 'model_index.json')) ? readJson(join(modelDir, 'model_index.json')) : {};
  const xl = Array.isArray(modelIndex.text_encoder_2) && modelIndex.text_encoder_2[0] !== null;
  if (xl && (modelIndex.requires_aesthetics_score === true || (Array.isArray(modelIndex.text_encoder) && modelIndex.text_encoder[0] === null))) {
    throw new Error(`${modelDir} is an SDXL refiner: it refines images and draws none from a prompt alone, which is not supported`);
  }
  const missing = [...REQUIRED_MODEL_FILES, ...(xl ? SDXL_MODEL_FILES : [])].filter((file) => !existsSync(join(modelDir, file)));
  if (missing.length > 0) {
    throw new Error(`${modelDir} is not a Stable Diffusion ONNX model: missing ${missing.join(', ')}`);
  }
  const pullManifestPath = join(modelDir, PULL_MANIFEST_FILE);
  const pulledFrom = existsSync(pullManifestPath) ? readJson(pullManifestPath).repo : undefined;
  const importManifestPath = join(modelDir, IMPORT_MANIFEST_FILE);
  const imported = existsSync(importManifestPath) ? (readJson(importManifestPath) as ImportManifest) : undefined;
  return {
    dir: modelDir,
    name: basename(modelDir).replace(/^\./, ''),
    schedulerConfig: readJson(join(modelDir, 'scheduler', 'scheduler_config.json')),
    unetConfig: existsSync(join(modelDir, 'unet', 'config.json')) ? readJson(join(modelDir, 'unet', 'config.json')) : undefined,
    isTiny: modelIndex[TINY_MODEL_MARKER] === true,
    origins: [basename(modelDir), pulledFrom, imported?.origin?.repo, imported?.source, modelIndex._name_or_path].filter((origin): origin is string => typeof origin === 'string'),
    imported,
    builtFused: modelIndex[FUSED_ATTENTION_MARKER] === true,
    sdxl: xl ? { forceZerosForEmptyPrompt: modelIndex.force_zeros_for_empty_prompt !== false } : undefined,
  };
}

function readJson(path: string): Record<string, any> {
  try {
    const value = JSON.parse(readFileSync(path, 'utf8'));
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error('not a JSON object');
    return value;
  } catch (error) {
    throw new Error(`Cannot read ${path}: ${(error as Error).message}`);
  }
}

/** What the U-Net's graph tells of the model, read from the session or the file (see readOnnxOutline). */
export interface UnetStructure {
  /** Set when the graph was exported for one latent size only. */
  fixedLatentSize: LatentSize | undefined;
  precision: 'fp32' | 'fp16';
  /** Its strided convolutions: the times the down path halves the resolution. */
  stridedNodes: number;
  /** Set when the graph was exported for one encoder_hidden_states length only (77: one chunk of a prompt). */
  fixedContextLength?: number;
  /** It takes the guidance as an embedding (`timestep_cond`): a Latent Consistency Model. */
  guidanceEmbedding: boolean;
  /** The width of encoder_hidden_states, when the graph gives it. */
  contextWidth?: number;
}

/** What callers may ask of this model: native size, size multiple, defaults for steps, guidance and scheduler. */
export function describeModel(config: ModelConfig, { fixedLatentSize, precision, stridedNodes, fixedContextLength, guidanceEmbedding, contextWidth }: UnetStructure): ModelInfo {
  const scheduler = config.schedulerConfig;
  const className = String(scheduler._class_name ?? 'PNDMScheduler');
  const predictionType = (scheduler.prediction_type ?? 'epsilon') as ModelInfo['predictionType'];
  const isTurbo = scheduler.timestep_spacing === 'trailing' || config.origins.some((origin) => /turbo/i.test(origin));
  // An LCM, or a model with an LCM-LoRA merged in (see model:import): LCM sampling in about 4 steps.
  const isLcm = className === 'LCMScheduler' || guidanceEmbedding;

  const crossAttention = config.unetConfig?.cross_attention_dim;
  const textContextWidth = contextWidth ?? (typeof crossAttention === 'number' ? crossAttention : undefined);

  const sampleSize = config.unetConfig?.sample_size;
  const nativeLatent =
    fixedLatentSize ??
    (typeof sampleSize === 'number' ? { height: sampleSize, width: sampleSize } : undefined) ??
    (predictionType === 'v_prediction' ? { height: 96, width: 96 } : { height: 64, width: 64 });

  // unet/config.json names the resolutions (one more than the halvings); without it the graph shows the halvings.
  // Neither (a graph that downsamples some other way): SD's three.
  const blockChannels = config.unetConfig?.block_out_channels;
  const downsamplings = Array.isArray(blockChannels) ? blockChannels.length - 1 : stridedNodes > 0 ? stridedNodes : 3;

  return {
    name: config.name,
    dir: config.dir,
    nativeWidth: nativeLatent.width * 8,
    nativeHeight: nativeLatent.height * 8,
    sizeMultiple: 8 * 2 ** downsamplings,
    fixedSize: fixedLatentSize !== undefined,
    defaultScheduler: schedulerDisplayName(className, scheduler),
    defaultSteps: isTurbo ? 1 : isLcm ? 4 : 20,
    // diffusers' defaults: LatentConsistencyModelPipeline's 8.5 (embedded, no second batch); LCM-LoRAs are made for 1 to 2.
    defaultGuidance: isTurbo ? 0 : guidanceEmbedding ? 8.5 : isLcm ? 1 : 7.5,
    // LCMScheduler draws its timesteps from the distillation's schedule, and takes no more steps than it has.
    maxSteps: isTurbo ? 4 : isLcm ? lcmScheduleLength(scheduler) : 150,
    predictionType,
    precision,
    maxPromptChunks: fixedContextLength === undefined ? MAX_PROMPT_CHUNKS : Math.max(1, Math.floor(fixedContextLength / (CHUNK_LENGTH + 2))),
    isTurbo,
    isLcm,
    isTiny: config.isTiny,
    imageToImage: existsSync(join(config.dir, 'vae_encoder', 'model.onnx')),
    ...(textContextWidth !== undefined && { textContextWidth }),
    ...(config.imported?.loras.length ? { loras: config.imported.loras } : {}),
    ...(config.imported?.vae ? { vae: vaeName(config.imported.vae.source) } : {}),
  };
}

function lcmScheduleLength(scheduler: Record<string, unknown>): number {
  const steps = scheduler.original_inference_steps;
  return typeof steps === 'number' && Number.isInteger(steps) && steps > 0 ? steps : LCM_DEFAULTS.original_inference_steps;
}

/** How a VAE is named in the parameters and the embed: its folder or file name. */
export function vaeName(source: string): string {
  return basename(source.replace(/[\\/]+$/, '')).replace(/\.safetensors$/i, '');
}
