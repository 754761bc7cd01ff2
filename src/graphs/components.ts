import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildVaeDecoder, buildVaeEncoder } from './autoencoder.ts';
import { type ClipTextModelOptions, buildClipTextModel } from './clip-text-model.ts';
import type { ClipTextConfig, SafetyCheckerConfig, UNetConfig, VaeConfig } from './configs.ts';
import type { AttentionKind, ParameterSpec, Precision } from './onnx-graph.ts';
import { buildSafetyChecker } from './safety-checker.ts';
import { jsonFile } from './stable-diffusion.ts';
import { type UNetOptions, buildUNet } from './unet-2d-condition.ts';
import type { WeightSource } from './weights.ts';
import { type WrittenGraph, listParameters, writeGraph } from './write-graph.ts';

/*
 * Each component of a diffusers ONNX pipeline as the builder writes it: the graph (model.onnx and, optionally,
 * its external data) and the config.json it was built from, in one folder per graph.
 */

export interface ComponentOptions {
  precision: Precision;
  attention: AttentionKind;
  weights: WeightSource;
  externalDataFile?: string;
  onParameter?: (name: string, bytes: number) => void;
}

async function withConfig(dir: string, config: object, written: Promise<WrittenGraph>): Promise<WrittenGraph> {
  const result = await written;
  await writeFile(join(dir, 'config.json'), jsonFile(config));
  return result;
}

export function writeTextEncoder(dir: string, config: ClipTextConfig, options: ComponentOptions & ClipTextModelOptions): Promise<WrittenGraph> {
  return withConfig(dir, config, writeGraph(dir, (g) => buildClipTextModel(g, config, options), options));
}

export function writeUNet(dir: string, config: UNetConfig, options: ComponentOptions & UNetOptions): Promise<WrittenGraph> {
  return withConfig(dir, { _class_name: 'UNet2DConditionModel', ...config }, writeGraph(dir, (g) => buildUNet(g, config, options), options));
}

/** vae_decoder/ and vae_encoder/ under `modelDir`, each with the VAE's config (the pipeline reads its scaling factor). */
export async function writeVae(modelDir: string, config: VaeConfig, options: ComponentOptions): Promise<WrittenGraph> {
  const total: WrittenGraph = { parameters: 0, bytes: 0 };
  for (const part of ['vae_decoder', 'vae_encoder'] as const) {
    const dir = join(modelDir, part);
    const build = part === 'vae_decoder' ? buildVaeDecoder : buildVaeEncoder;
    const written = await withConfig(dir, config, writeGraph(dir, (g) => build(g, config), options));
    total.parameters += written.parameters;
    total.bytes += written.bytes;
  }
  return total;
}

export function writeSafetyChecker(dir: string, config: SafetyCheckerConfig, options: ComponentOptions): Promise<WrittenGraph> {
  return withConfig(dir, config, writeGraph(dir, (g) => buildSafetyChecker(g, config), options));
}

export function textEncoderParameters(config: ClipTextConfig): Map<string, ParameterSpec> {
  return listParameters((g) => buildClipTextModel(g, config, { inputIdsType: 'int32' }));
}

export function unetParameters(config: UNetConfig): Map<string, ParameterSpec> {
  return listParameters((g) => buildUNet(g, config, { timestepType: 'float32', timestepShape: 'batch' }));
}

/** The decoder's and the encoder's parameters together (one VAE state dict). */
export function vaeParameters(config: VaeConfig): Map<string, ParameterSpec> {
  return new Map([...listParameters((g) => buildVaeDecoder(g, config)), ...listParameters((g) => buildVaeEncoder(g, config))]);
}

export function safetyCheckerParameters(config: SafetyCheckerConfig): Map<string, ParameterSpec> {
  return listParameters((g) => buildSafetyChecker(g, config));
}
