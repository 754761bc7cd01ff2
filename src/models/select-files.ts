import type { PlatformPath } from 'node:path';
import { REQUIRED_MODEL_FILES, SDXL_MODEL_FILES } from '../pipeline/model-config.ts';
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

const CONFIG_COMPONENTS = new Set(['scheduler', 'tokenizer', 'tokenizer_2']);
const ONNX_COMPONENTS = new Set(['text_encoder', 'text_encoder_2', 'unet', 'vae_decoder', 'vae_encoder']);

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
 * the scheduler, tokenizer(_2), text_encoder(_2), unet, vae_decoder and vae_encoder folders directly under `subfolder`,
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
  const sdxl = planned.some((file) => file.target.startsWith('text_encoder_2/'));
  const missing = [...REQUIRED_MODEL_FILES, ...(sdxl ? SDXL_MODEL_FILES : [])].filter((path) => !targets.has(path));
  if (missing.length > 0) {
    const hasPytorch = files.some((file) => file.path.startsWith(`${prefix}unet/`) && /\.(safetensors|bin)$/.test(file.path));
    const folders = [...new Set(files.filter((file) => file.path.startsWith(prefix) && file.path.length > prefix.length).map((file) => file.path.slice(prefix.length).split('/')[0]))];
    const hint = hasPytorch
      ? ' It holds PyTorch weights: npm run model:pull (or model:import) builds the ONNX graphs from them.'
      : folders.length > 0
        ? ` Its ${prefix ? `"${subfolder}" ` : ''}top level has: ${folders.slice(0, 12).join(', ')}${folders.length > 12 ? ', ...' : ''}.`
        : '';
    throw new Error(`${describeSource} is not a diffusers ONNX Stable Diffusion export: missing ${missing.join(', ')}.${hint}`);
  }
  return { files: planned, unsafe };
}

/** The PyTorch components of a diffusers Stable Diffusion pipeline (SDXL's add text_encoder_2), and the names their weights go by. */
const PYTORCH_COMPONENTS = ['text_encoder', 'unet', 'vae'];

/** How diffusers (diffusion_pytorch_model) and transformers (model) name a component's weights. */
export interface WeightFileNames {
  base: string;
  variant: string;
  single: string;
  /** The index of the same weights sharded (a variant goes inside its name: model.safetensors.index.fp16.json). */
  indexes: string[];
}

/** The names a component's .safetensors weights go by, in order of preference: full precision first, as diffusers loads by default. */
export const WEIGHT_FILE_NAMES: readonly WeightFileNames[] = ['', '.fp16'].flatMap((variant) =>
  ['diffusion_pytorch_model', 'model'].map((base) => ({
    base,
    variant,
    single: `${base}${variant}.safetensors`,
    indexes: [`${base}${variant}.safetensors.index.json`, `${base}.safetensors.index${variant}.json`],
  })),
);
const PICKLED_WEIGHTS = /\.(bin|ckpt|pt|pth)$/i;

/** Whether a listing holds a diffusers ONNX export under `subfolder` (its U-Net graph). */
export function isOnnxExport(files: readonly RepoFile[], subfolder: string): boolean {
  const prefix = subfolder ? `${subfolder}/` : '';
  return files.some((file) => file.path === `${prefix}unet/model.onnx`);
}

/**
 * Whether a listing holds diffusers PyTorch weights under `subfolder`: a pipeline (model_index.json and a unet/
 * folder) or a single component such as a VAE (config.json and weights).
 */
export function isPytorchRepository(files: readonly RepoFile[], subfolder: string): boolean {
  const prefix = subfolder ? `${subfolder}/` : '';
  const has = (path: string) => files.some((file) => file.path === `${prefix}${path}`);
  const pipeline = has('model_index.json') && files.some((file) => file.path.startsWith(`${prefix}unet/`));
  return pipeline || (has('config.json') && files.some((file) => file.path.startsWith(prefix) && /^[^/]+\.safetensors(\.index\.json)?$/.test(file.path.slice(prefix.length))));
}

/**
 * Picks what `npm run model:import` needs out of a diffusers PyTorch repository: model_index.json, the scheduler
 * and tokenizer configs, and for the text encoder, U-Net and VAE their config.json and one set of .safetensors
 * weights (a single file, or an index with its shards). Pickled weights are never picked; a component that has
 * nothing else is refused, as is a listing that is not such a pipeline.
 */
export function selectPytorchFiles(files: readonly RepoFile[], subfolder: string, describeSource: string): ModelFileSelection {
  const prefix = subfolder ? `${subfolder}/` : '';
  const byTarget = new Map<string, RepoFile>();
  const unsafe: string[] = [];
  for (const file of files) {
    if (!file.path.startsWith(prefix)) continue;
    const target = file.path.slice(prefix.length);
    if (target.split('/').every(isPlainFileName)) byTarget.set(target, file);
    else if ([...PYTORCH_COMPONENTS, 'text_encoder_2', ...CONFIG_COMPONENTS].includes(target.split(/[/\\]/)[0])) unsafe.push(target);
  }
  if (!byTarget.has('model_index.json') && byTarget.has('config.json')) return { files: componentFiles(byTarget, describeSource), unsafe };
  // SDXL: a second text encoder and its tokenizer.
  const xl = [...byTarget.keys()].some((target) => target.startsWith('text_encoder_2/'));
  const tokenizers = xl ? ['tokenizer', 'tokenizer_2'] : ['tokenizer'];
  const inFolder = (folder: string, pattern: RegExp) => [...byTarget.keys()].filter((target) => target.startsWith(`${folder}/`) && pattern.test(target.slice(folder.length + 1)));
  const wanted = ['model_index.json', ...inFolder('scheduler', /^[^/]+\.json$/), ...tokenizers.flatMap((folder) => inFolder(folder, /^[^/]+\.(json|txt)$/))];
  const missing = ['model_index.json', 'scheduler/scheduler_config.json', ...tokenizers.flatMap((folder) => [`${folder}/vocab.json`, `${folder}/merges.txt`])].filter(
    (target) => !byTarget.has(target),
  );
  for (const component of xl ? [...PYTORCH_COMPONENTS, 'text_encoder_2'] : PYTORCH_COMPONENTS) {
    if (!byTarget.has(`${component}/config.json`)) missing.push(`${component}/config.json`);
    else wanted.push(`${component}/config.json`);
    const weights = weightFiles(`${component}/`, new Set(byTarget.keys()));
    if (weights) wanted.push(...weights);
    else if (inFolder(component, PICKLED_WEIGHTS).length > 0) {
      throw new Error(
        `${describeSource} has only pickled PyTorch weights for ${component} (.bin), which are not loaded: a pickle can run any code hidden in it. Look for a version of the model with .safetensors weights.`,
      );
    } else missing.push(`${component}/*.safetensors`);
  }
  if (missing.length > 0) throw new Error(`${describeSource} is not a diffusers Stable Diffusion repository: missing ${missing.join(', ')}`);
  const planned = wanted.map((target) => ({ ...byTarget.get(target)!, target })).sort((a, b) => a.target.localeCompare(b.target));
  return { files: planned, unsafe };
}

/** A repository of one component (a VAE such as madebyollin/taesd): its config.json and weights. */
function componentFiles(byTarget: Map<string, RepoFile>, describeSource: string): PlannedFile[] {
  const weights = weightFiles('', new Set(byTarget.keys()));
  if (!weights) throw new Error(`${describeSource} has a config.json but no .safetensors weights beside it`);
  return ['config.json', ...weights].map((target) => ({ ...byTarget.get(target)!, target }));
}

/** One set of .safetensors weights in `folder` ("unet/", or "" for the top level) among `targets`: a single file, or an index and its shards. */
function weightFiles(folder: string, targets: Set<string>): string[] | undefined {
  for (const { base, variant, single, indexes } of WEIGHT_FILE_NAMES) {
    if (targets.has(`${folder}${single}`)) return [`${folder}${single}`];
    const index = indexes.map((name) => `${folder}${name}`).find((name) => targets.has(name));
    if (!index) continue;
    const escaped = variant.replace('.', '\\.');
    const shard = new RegExp(`^${folder}${base}(${escaped}-\\d+-of-\\d+|-\\d+-of-\\d+${escaped})\\.safetensors$`);
    return [index, ...[...targets].filter((target) => shard.test(target))];
  }
  return undefined;
}

/** The one file `name` (under `subfolder`) of a repository listing, e.g. an upscaler's .onnx; throws when it is not there. */
export function selectOneFile(files: readonly RepoFile[], subfolder: string, name: string, describeSource: string): ModelFileSelection {
  const prefix = subfolder ? `${subfolder.replace(/^\/+|\/+$/g, '')}/` : '';
  if (!isPlainFileName(name)) throw new Error(`Refusing to write "${name}": it is not a plain file name.`);
  const file = files.find((candidate) => candidate.path === prefix + name);
  if (!file) throw new Error(`${describeSource} has no file ${prefix}${name}.`);
  return { files: [{ ...file, target: name }], unsafe: [] };
}
