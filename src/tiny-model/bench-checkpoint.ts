import { rename, rm } from 'node:fs/promises';
import { textEncoderParameters, unetParameters, vaeParameters } from '../graphs/components.ts';
import { resolveAutoencoderKLConfig, resolveClipTextConfig, resolveUnetConfig } from '../graphs/configs.ts';
import type { ParameterSpec } from '../graphs/onnx-graph.ts';
import { RandomWeights, componentSeed } from '../graphs/weights.ts';
import { float32ToFloat16 } from '../pipeline/float16.ts';
import { unetLdmKey, vaeLdmKey } from '../import/ldm-keys.ts';
import { SafetensorsWriter, type TensorToWrite } from '../models/safetensors.ts';
import { type BenchModelConfigs, SD15_CONFIGS } from './bench-model.ts';

export interface BenchCheckpointOptions {
  configs?: BenchModelConfigs;
  /** float16, as most checkpoints on model sites are (default), or float32. */
  dtype?: 'F16' | 'F32';
  seed?: number;
}

const DEFAULT_SEED = 15;
/** The LDM VAE stores its attention projections as 1×1 convolutions. */
const VAE_CONV_ATTENTION = /\.mid\.attn_1\.(q|k|v|proj_out)\.weight$/;

interface Entry {
  key: string;
  spec: ParameterSpec;
  seed: number;
  name: string;
}

/**
 * Writes a single-file checkpoint with Stable Diffusion 1.5's architecture, random weights and the original
 * (LDM) key names, as model sites distribute them: what `npm run model:import` is measured on. Streamed tensor by
 * tensor; the file appears only once complete.
 */
export async function writeBenchCheckpoint(path: string, options: BenchCheckpointOptions = {}): Promise<{ tensors: number; bytes: number }> {
  const configs = options.configs ?? SD15_CONFIGS;
  const dtype = options.dtype ?? 'F16';
  const seed = options.seed ?? DEFAULT_SEED;
  const unet = resolveUnetConfig(configs.unet);
  const vae = resolveAutoencoderKLConfig(configs.vae);
  const entries: Entry[] = [];
  const add = (component: string, parameters: Map<string, ParameterSpec>, key: (name: string) => string | undefined) => {
    for (const [name, spec] of parameters) {
      const ldm = key(name);
      if (!ldm) throw new Error(`no LDM name for ${component} ${name}`);
      entries.push({ key: ldm, spec, seed: componentSeed(seed, component), name });
    }
  };
  add('text_encoder', textEncoderParameters(resolveClipTextConfig(configs.textEncoder)), (name) => `cond_stage_model.transformer.${name}`);
  add('unet', unetParameters(unet), (name) => unetLdmKey(name, unet));
  add('vae', vaeParameters(vae), (name) => vaeLdmKey(name, vae));

  const shapeOf = ({ key, spec }: Entry) => (VAE_CONV_ATTENTION.test(key) ? [...spec.shape, 1, 1] : spec.shape);
  const declared: TensorToWrite[] = entries.map((entry) => ({ name: entry.key, dtype, shape: shapeOf(entry) }));
  const partial = `${path}.partial`;
  const writer = new SafetensorsWriter(partial, declared, { format: 'pt' });
  const sources = new Map<number, RandomWeights>();
  let bytes = 0;
  try {
    for (const entry of entries) {
      const source = sources.get(entry.seed) ?? new RandomWeights(entry.seed);
      sources.set(entry.seed, source);
      const values = source.read(entry.name, entry.spec.shape, entry.spec.init);
      const data = dtype === 'F16' ? float32ToFloat16(values) : values;
      writer.write(entry.key, data);
      bytes += data.byteLength;
    }
  } catch (error) {
    writer.abort();
    await rm(partial, { force: true });
    throw error;
  }
  writer.close();
  await rename(partial, path);
  return { tensors: entries.length, bytes };
}
