import { REQUIRED_MODEL_FILES } from '../pipeline/model-config.ts';
import type { RepoFile } from './hub-client.ts';

/** A repository file to download and where it goes inside the model directory. */
export interface PlannedFile extends RepoFile {
  /** Path inside the model directory (the repository path without the subfolder). */
  target: string;
}

const CONFIG_COMPONENTS = new Set(['scheduler', 'tokenizer']);
const ONNX_COMPONENTS = new Set(['text_encoder', 'unet', 'vae_decoder', 'vae_encoder']);

/** Weights of other frameworks that share folders with ONNX exports in some repositories. */
const FOREIGN_WEIGHTS = /\.(safetensors|bin|pt|pth|ckpt|msgpack|h5|ot|tflite|mlmodel|xml|mapping)$/i;

function wanted(component: string, name: string): boolean {
  if (name.startsWith('.') || !(CONFIG_COMPONENTS.has(component) || ONNX_COMPONENTS.has(component))) return false;
  if (/\.(json|txt)$/i.test(name)) return true;
  if (CONFIG_COMPONENTS.has(component) || FOREIGN_WEIGHTS.test(name) || /\.(md|png|jpe?g|webp|gif)$/i.test(name)) return false;
  // The graph itself plus its external data (weights.pb, model.onnx_data, model.onnx.data or per-tensor files),
  // but not other graphs (model_fp16.onnx, model_layernorm.onnx) nor their data.
  if (name === 'model.onnx') return true;
  return !/\.onnx$/i.test(name) && !/^(?!model\.onnx)[^/]+\.onnx[._]data$/i.test(name);
}

/**
 * Picks the files of a diffusers ONNX Stable Diffusion export out of a repository listing: model_index.json and
 * the scheduler, tokenizer, text_encoder, unet, vae_decoder and vae_encoder folders directly under `subfolder`.
 * Throws naming what is missing when the listing is not such an export.
 */
export function selectModelFiles(files: readonly RepoFile[], subfolder: string, describeSource: string): PlannedFile[] {
  const prefix = subfolder ? `${subfolder.replace(/^\/+|\/+$/g, '')}/` : '';
  const planned: PlannedFile[] = [];
  for (const file of files) {
    if (!file.path.startsWith(prefix)) continue;
    const target = file.path.slice(prefix.length);
    const parts = target.split('/');
    const keep = parts.length === 1 ? target === 'model_index.json' : parts.length === 2 && wanted(parts[0], parts[1]);
    if (keep) planned.push({ ...file, target });
  }
  planned.sort((a, b) => a.target.localeCompare(b.target));

  const targets = new Set(planned.map((file) => file.target));
  const missing = REQUIRED_MODEL_FILES.filter((path) => !targets.has(path));
  if (missing.length > 0) {
    const hasPytorch = files.some((file) => file.path.startsWith(`${prefix}unet/`) && /\.(safetensors|bin)$/.test(file.path));
    const folders = [...new Set(files.filter((file) => file.path.startsWith(prefix) && file.path.length > prefix.length).map((file) => file.path.slice(prefix.length).split('/')[0]))];
    const hint = hasPytorch
      ? ' It holds PyTorch weights: look for an ONNX export of this model (another repository, or an "onnx" revision/subfolder).'
      : folders.length > 0
        ? ` Its ${prefix ? `"${subfolder}" ` : ''}top level has: ${folders.slice(0, 12).join(', ')}${folders.length > 12 ? ', ...' : ''}.`
        : '';
    throw new Error(`${describeSource} is not a diffusers ONNX Stable Diffusion export: missing ${missing.join(', ')}.${hint}`);
  }
  return planned;
}
