import { existsSync } from 'node:fs';
import { copyFile, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SD15_TEXT_ENCODER, buildBenchTextEncoder } from './bench-text-encoder.ts';
import { type BenchUnetDims, SD15_UNET, buildBenchUnet } from './bench-unet.ts';
import { type BenchVaeDims, SD15_VAE, buildBenchVaeDecoder } from './bench-vae-decoder.ts';
import { ExternalDataFile, StreamingGraphBuilder } from './bench-weights.ts';
import { DIFFUSERS_VERSION, SD15_SCHEDULER, jsonFile, onnxPipelineIndex } from './diffusers-layout.ts';
import { type ModelProto, type Precision, encodeModel } from './graph.ts';
import { componentSeed, mulberry32 } from './random.ts';
import { type TextEncoderDims } from './text-encoder.ts';
import { END_OF_TEXT, buildTokenizer } from './tokenizer.ts';

export interface BenchModelDims {
  unet: BenchUnetDims;
  textEncoder: TextEncoderDims;
  vae: BenchVaeDims;
}

/** Stable Diffusion 1.5's widths: 1.03 billion parameters, 4.1 GB in fp32. */
export const SD15_DIMS: BenchModelDims = { unet: SD15_UNET, textEncoder: SD15_TEXT_ENCODER, vae: SD15_VAE };

export interface BenchModelOptions {
  precision?: Precision;
  /** Defaults to SD 1.5's; smaller ones make the same architecture quick to test. */
  dims?: BenchModelDims;
  /** A folder with CLIP's vocab.json and merges.txt (e.g. a real model's tokenizer/); else the tiny tokenizer. */
  tokenizerDir?: string;
  seed?: number;
  /** Called as each part is about to be written (it can take a minute for the U-Net). */
  onPart?: (part: string) => void;
}

export interface BenchModelSummary {
  parameters: Record<'text_encoder' | 'unet' | 'vae_decoder', number>;
  /** Bytes of model.onnx + external data, all parts together. */
  bytes: number;
}

const DEFAULT_SEED = 15;
const WEIGHTS_FILE = 'model.onnx_data';

type Part = keyof BenchModelSummary['parameters'];

/**
 * Writes a diffusers-layout ONNX model with Stable Diffusion 1.5's architecture and widths and random weights, so
 * timings reflect the real model's cost (it draws noise). Every part keeps its weights in model.onnx_data beside
 * model.onnx (protobuf cannot hold 2 GB), written as they are drawn. The folder appears only once complete.
 */
export async function writeBenchModel(dir: string, options: BenchModelOptions = {}): Promise<BenchModelSummary> {
  const precision = options.precision ?? 'fp32';
  const dims = options.dims ?? SD15_DIMS;
  const seed = options.seed ?? DEFAULT_SEED;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new Error(`bench model seed must be an integer in 0..4294967295; got ${seed}`);
  if (existsSync(dir)) throw new Error(`${dir} already exists; remove it first`);

  const staging = `${dir}.partial-${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  try {
    const builds: Record<Part, (g: StreamingGraphBuilder) => ModelProto> = {
      text_encoder: (g) => buildBenchTextEncoder(g, dims.textEncoder),
      unet: (g) => buildBenchUnet(g, dims.unet),
      vae_decoder: (g) => buildBenchVaeDecoder(g, dims.vae),
    };
    const parameters = { text_encoder: 0, unet: 0, vae_decoder: 0 };
    let bytes = 0;
    for (const part of Object.keys(builds) as Part[]) {
      options.onPart?.(part);
      const partDir = join(staging, part);
      await mkdir(partDir, { recursive: true });
      const weights = ExternalDataFile.create(join(partDir, WEIGHTS_FILE), WEIGHTS_FILE);
      let model: Uint8Array;
      try {
        const g = new StreamingGraphBuilder(precision, mulberry32(componentSeed(seed, part)), weights);
        model = encodeModel(builds[part](g)).model;
        parameters[part] = g.parameterCount;
      } finally {
        weights.close();
      }
      await writeFile(join(partDir, 'model.onnx'), model);
      bytes += model.byteLength + weights.byteLength;
    }
    await writeConfigs(staging, dims, precision, options.tokenizerDir);
    await rename(staging, dir);
    return { parameters, bytes };
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
}

async function writeConfigs(dir: string, dims: BenchModelDims, precision: Precision, tokenizerDir: string | undefined): Promise<void> {
  const tokenizer = buildTokenizer(END_OF_TEXT);
  if (!tokenizerDir && tokenizer.vocab.size > dims.textEncoder.vocabSize) {
    throw new Error(`the text encoder's vocabulary (${dims.textEncoder.vocabSize}) is smaller than the tiny tokenizer's (${tokenizer.vocab.size})`);
  }
  const files: Record<string, string> = {
    'model_index.json': jsonFile(onnxPipelineIndex(SD15_SCHEDULER._class_name)),
    'scheduler/scheduler_config.json': jsonFile(SD15_SCHEDULER),
    'unet/config.json': jsonFile({
      _class_name: 'UNet2DConditionModel',
      _diffusers_version: DIFFUSERS_VERSION,
      attention_head_dim: dims.unet.heads,
      block_out_channels: dims.unet.blockOutChannels,
      cross_attention_dim: dims.unet.crossAttentionDim,
      in_channels: 4,
      layers_per_block: dims.unet.layersPerBlock,
      norm_num_groups: dims.unet.groups,
      out_channels: 4,
      sample_size: 64,
    }),
    'text_encoder/config.json': jsonFile({
      architectures: ['CLIPTextModel'],
      hidden_act: 'quick_gelu',
      hidden_size: dims.textEncoder.hiddenSize,
      intermediate_size: dims.textEncoder.intermediateSize,
      max_position_embeddings: dims.textEncoder.maxPositions,
      model_type: 'clip_text_model',
      num_attention_heads: dims.textEncoder.heads,
      num_hidden_layers: dims.textEncoder.layers,
      torch_dtype: precision === 'fp16' ? 'float16' : 'float32',
      vocab_size: dims.textEncoder.vocabSize,
    }),
    'vae_decoder/config.json': jsonFile({
      _class_name: 'AutoencoderKL',
      _diffusers_version: DIFFUSERS_VERSION,
      block_out_channels: dims.vae.blockOutChannels,
      latent_channels: 4,
      layers_per_block: dims.vae.layersPerBlock,
      norm_num_groups: dims.vae.groups,
      out_channels: 3,
      sample_size: 512,
      scaling_factor: 0.18215,
    }),
    'tokenizer/tokenizer_config.json': tokenizer.files['tokenizer_config.json'],
    'tokenizer/special_tokens_map.json': tokenizer.files['special_tokens_map.json'],
  };
  if (!tokenizerDir) {
    files['tokenizer/vocab.json'] = tokenizer.files['vocab.json'];
    files['tokenizer/merges.txt'] = tokenizer.files['merges.txt'];
  }
  for (const [relativePath, contents] of Object.entries(files)) {
    await mkdir(join(dir, relativePath, '..'), { recursive: true });
    await writeFile(join(dir, relativePath), contents);
  }
  if (tokenizerDir) {
    for (const name of ['vocab.json', 'merges.txt']) {
      const source = join(tokenizerDir, name);
      if (!existsSync(source)) throw new Error(`tokenizer folder ${tokenizerDir} has no ${name}`);
      await copyFile(source, join(dir, 'tokenizer', name));
    }
  }
}
