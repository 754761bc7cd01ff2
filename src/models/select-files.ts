import type { PlatformPath } from 'node:path';
import { REQUIRED_MODEL_FILES } from '../pipeline/model-config.ts';
import type { RepoFile } from './hub-client.ts';

/** A repository file to download and where it goes inside the model directory. */
export interface PlannedFile extends RepoFile {
  /** Path inside the model directory (the repository path without the subfolder). */
  target: string;
}

export interface ModelFileSelection {
  files: PlannedFile[];
  /** Entries in the component folders whose names are not plain file names: left out, as they may be hostile. */
  unsafe: string[];
}

const CONFIG_COMPONENTS = new Set(['scheduler', 'tokenizer']);
const ONNX_COMPONENTS = new Set(['text_encoder', 'unet', 'vae_decoder', 'vae_encoder']);

/**
 * A file name that means the same on every platform and stays in its folder: letters, digits, ".", "_" and "-",
 * starting with a letter, digit or "_" (so never "." or ".."), not ending in "." (Windows drops it), and not a
 * Windows device name. No separators, drive letters or control characters can get through.
 */
const PLAIN_NAME = /^[A-Za-z0-9_][\w.-]{0,199}(?<!\.)$/;
const WINDOWS_DEVICE = /^(con|prn|aux|nul|com\d|lpt\d)(\.|$)/i;

export function isPlainFileName(name: string): boolean {
  return PLAIN_NAME.test(name) && !WINDOWS_DEVICE.test(name);
}

/** Configuration and vocabulary files, in any component. */
const CONFIG_FILE = /\.(json|txt)$/i;
/**
 * The external data an ONNX graph keeps beside it: one file (weights.pb, model.onnx_data, model.onnx.data) or one
 * per tensor, named after it (onnx__MatMul_1234, conv_in.weight). Data of other graphs (model_fp16.onnx_data) is not.
 */
const EXTERNAL_DATA = /^(?:[^.]+|.+\.(?:pb|data|onnx_data|weight|bias))$/i;
const OTHER_GRAPH_DATA = /^(?!model\.onnx[._]data$).+\.onnx[._]data$/i;

/** Whether a file of this name in this component folder is part of the model. */
function isModelFileType(component: string, name: string): boolean {
  if (CONFIG_COMPONENTS.has(component)) return CONFIG_FILE.test(name);
  if (!ONNX_COMPONENTS.has(component)) return false;
  return CONFIG_FILE.test(name) || name === 'model.onnx' || (EXTERNAL_DATA.test(name) && !OTHER_GRAPH_DATA.test(name));
}

/**
 * Where `target` (a planned file's "/"-separated path) goes under `root`, checked with `paths` (the platform's path
 * rules, or path.win32 / path.posix to check another platform's): throws unless every segment is a plain file name
 * and the result stays inside `root`.
 */
export function placeInside(root: string, target: string, paths: PlatformPath): string {
  const segments = target.split('/');
  const placed = paths.join(root, ...segments);
  const inside = paths.relative(paths.resolve(root), paths.resolve(placed));
  if (!segments.every(isPlainFileName) || inside === '' || inside.startsWith('..') || paths.isAbsolute(inside)) {
    throw new Error(`Refusing to write "${target}": it is not a plain file name inside the model directory.`);
  }
  return placed;
}

/**
 * Picks the files of a diffusers ONNX Stable Diffusion export out of a repository listing: model_index.json and
 * the scheduler, tokenizer, text_encoder, unet, vae_decoder and vae_encoder folders directly under `subfolder`,
 * only the file types a model needs, and only under plain file names. Throws naming what is missing when the
 * listing is not such an export.
 */
export function selectModelFiles(files: readonly RepoFile[], subfolder: string, describeSource: string): ModelFileSelection {
  const prefix = subfolder ? `${subfolder.replace(/^\/+|\/+$/g, '')}/` : '';
  const planned: PlannedFile[] = [];
  const unsafe: string[] = [];
  for (const file of files) {
    if (!file.path.startsWith(prefix)) continue;
    const target = file.path.slice(prefix.length);
    const parts = target.split('/');
    if (!parts.every(isPlainFileName)) {
      // The folder it claims, reading "\\" as Windows does.
      const folder = target.split(/[/\\]/)[0];
      if (CONFIG_COMPONENTS.has(folder) || ONNX_COMPONENTS.has(folder)) unsafe.push(target);
      continue;
    }
    const wanted = parts.length === 1 ? target === 'model_index.json' : parts.length === 2 && isModelFileType(parts[0], parts[1]);
    if (wanted) planned.push({ ...file, target });
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
  return { files: planned, unsafe };
}
