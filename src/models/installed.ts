import { existsSync } from 'node:fs';
import { readFile, readdir, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { describeModel, IMPORT_MANIFEST_FILE, type ImportManifest, PULL_MANIFEST_FILE, readModelConfig } from '../pipeline/model-config.ts';
import type { ModelInfo } from '../pipeline/types.ts';
import { PROJECT_ROOT } from '../runtime.ts';
import { ONNX_FLOAT16, readOnnxOutline } from '../pipeline/onnx-outline.ts';
import { readUpscalerFolder, type InstalledUpscaler } from './upscalers.ts';

/** Written into a pulled model's directory: where it came from and what was verified. */
export interface PullManifest {
  repo: string;
  revision: string;
  subfolder?: string;
  commit: string | undefined;
  endpoint: string;
  pulledAt: string;
  files: { path: string; size: number; sha256?: string; gitOid?: string }[];
}


export interface InstalledModel {
  name: string;
  dir: string;
  /** "SD 1.x", "SD 2.x", "SD-Turbo", "SDXL", "SDXL-Turbo", "LCM" or "tiny test model". */
  type: string;
  precision: 'fp32' | 'fp16';
  /** Bytes on disk. */
  bytes: number;
  /** Display name of the scheduler the model ships with, e.g. "PNDM" or "Euler a". */
  defaultScheduler: string;
  nativeWidth: number;
  nativeHeight: number;
  /** Everything the pipeline will report for this model once loaded (default steps, guidance, size rules). */
  info: ModelInfo;
  /** Set for models installed by model:pull. */
  source?: Pick<PullManifest, 'repo' | 'revision' | 'subfolder' | 'commit'>;
  /** Set for models built by model:import: what from, and the LoRAs merged in. */
  imported?: Pick<ImportManifest, 'source' | 'description' | 'loras' | 'vae'>;
}

/** A VAE alone (vae_decoder/, vae_encoder/), as model:import writes a VAE folder: what `--vae NAME` uses. */
export interface InstalledVae {
  name: string;
  dir: string;
  /** AutoencoderKL or AutoencoderTiny. */
  type: string;
  precision: 'fp32' | 'fp16';
  bytes: number;
  imported?: Pick<ImportManifest, 'source' | 'description'>;
}

export interface SkippedModel {
  name: string;
  dir: string;
  reason: string;
}

const MODEL_NAME = /^[A-Za-z0-9][\w.-]{0,63}$/;

export function checkModelName(name: string): void {
  if (!MODEL_NAME.test(name)) {
    throw new Error(`"${name}" is not a model name: use up to 64 letters, digits, ".", "_" or "-", starting with a letter or digit`);
  }
}

/** `<repo>/models`, or MODELS_DIR when set. */
export function defaultModelsDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.MODELS_DIR ? resolve(env.MODELS_DIR) : join(PROJECT_ROOT, 'models');
}

/** Paths of the regular files under `dir`, relative to it with "/" separators. */
export async function filesBelow(dir: string, prefix = ''): Promise<string[]> {
  const files: string[] = [];
  for (const entry of await readdir(join(dir, prefix), { withFileTypes: true })) {
    const path = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) files.push(...(await filesBelow(dir, path)));
    else if (entry.isFile()) files.push(path);
  }
  return files;
}

async function directoryBytes(dir: string): Promise<number> {
  let total = 0;
  for (const path of await filesBelow(dir)) total += (await stat(join(dir, path))).size;
  return total;
}

async function readJsonIfPresent(path: string): Promise<Record<string, any> | undefined> {
  if (!existsSync(path)) return undefined;
  try {
    return JSON.parse(await readFile(path, 'utf8'));
  } catch {
    return undefined;
  }
}

/** SD 1.x conditions on 768-wide CLIP-L states, SD 2.x on 1024-wide OpenCLIP-H states (SDXL, with two text encoders, is told apart before). */
async function family(dir: string, contextWidth: number | undefined): Promise<'SD 1.x' | 'SD 2.x'> {
  const textEncoder = await readJsonIfPresent(join(dir, 'text_encoder', 'config.json'));
  const unet = await readJsonIfPresent(join(dir, 'unet', 'config.json'));
  const width = contextWidth ?? textEncoder?.hidden_size ?? unet?.cross_attention_dim;
  if (width === 1024) return 'SD 2.x';
  if (width === 768) return 'SD 1.x';
  const specialTokens = await readJsonIfPresent(join(dir, 'tokenizer', 'special_tokens_map.json'));
  const pad = specialTokens?.pad_token;
  return (typeof pad === 'string' ? pad : pad?.content) === '!' ? 'SD 2.x' : 'SD 1.x';
}

/** Describes the model in `dir` from its files alone (JSON configs and the U-Net's declared inputs). */
export async function describeInstalledModel(dir: string): Promise<InstalledModel> {
  const config = readModelConfig(dir);
  const { inputs, stridedNodes, float16Weights } = await readOnnxOutline(join(config.dir, 'unet', 'model.onnx'));
  const sample = inputs.find((input) => input.name === 'sample');
  if (!sample) throw new Error(`unet/model.onnx has no "sample" input (inputs: ${inputs.map((input) => input.name).join(', ')})`);
  const precision = float16Weights ? 'fp16' : 'fp32';
  const [, , height, width] = sample.shape;
  const fixedLatentSize = typeof height === 'number' && typeof width === 'number' && height > 0 && width > 0 ? { height, width } : undefined;
  const [, contextLength, contextDimension] = inputs.find((input) => input.name === 'encoder_hidden_states')?.shape ?? [];
  const contextWidth = typeof contextDimension === 'number' && contextDimension > 0 ? contextDimension : undefined;
  const fixedContextLength = typeof contextLength === 'number' && contextLength > 0 ? contextLength : undefined;
  const guidanceEmbedding = inputs.some((input) => input.name === 'timestep_cond');
  const info = describeModel(config, { fixedLatentSize, precision, stridedNodes, fixedContextLength, guidanceEmbedding, contextWidth });
  const type = info.isTiny
    ? 'tiny test model'
    : config.sdxl
      ? info.isTurbo ? 'SDXL-Turbo' : 'SDXL'
      : info.isTurbo ? 'SD-Turbo' : guidanceEmbedding ? 'LCM' : await family(config.dir, contextWidth);
  const manifest = (await readJsonIfPresent(join(config.dir, PULL_MANIFEST_FILE))) as PullManifest | undefined;
  const imported = (await readJsonIfPresent(join(config.dir, IMPORT_MANIFEST_FILE))) as ImportManifest | undefined;
  return {
    name: config.name,
    dir: config.dir,
    type,
    precision,
    bytes: await directoryBytes(config.dir),
    defaultScheduler: info.defaultScheduler,
    nativeWidth: info.nativeWidth,
    nativeHeight: info.nativeHeight,
    info,
    ...(manifest?.repo ? { source: { repo: manifest.repo, revision: manifest.revision, subfolder: manifest.subfolder, commit: manifest.commit } } : {}),
    ...(imported?.source ? { imported: { source: imported.source, description: imported.description, loras: imported.loras ?? [], vae: imported.vae } } : {}),
  };
}

/** A folder with a VAE decoder and no U-Net is a VAE (model:import writes one from a VAE folder). */
export function isVaeFolder(dir: string): boolean {
  return existsSync(join(dir, 'vae_decoder', 'model.onnx')) && !existsSync(join(dir, 'unet'));
}

export async function describeInstalledVae(dir: string): Promise<InstalledVae> {
  const config = await readJsonIfPresent(join(dir, 'vae_decoder', 'config.json'));
  const { inputs } = await readOnnxOutline(join(dir, 'vae_decoder', 'model.onnx'));
  const latent = inputs.find((input) => input.name === 'latent_sample');
  if (!latent) throw new Error(`vae_decoder/model.onnx has no "latent_sample" input (inputs: ${inputs.map((input) => input.name).join(', ')})`);
  const imported = (await readJsonIfPresent(join(dir, IMPORT_MANIFEST_FILE))) as ImportManifest | undefined;
  return {
    name: basename(dir),
    dir,
    type: typeof config?._class_name === 'string' ? config._class_name : 'AutoencoderKL',
    precision: latent.elemType === ONNX_FLOAT16 ? 'fp16' : 'fp32',
    bytes: await directoryBytes(dir),
    ...(imported?.source ? { imported: { source: imported.source, description: imported.description } } : {}),
  };
}

/**
 * The installed tiny decoder (an AutoencoderTiny VAE, e.g. TAESD) that fits a model: one named for SDXL ("taesdxl")
 * for an SDXL model, one not so named for the others. Undefined when none is installed.
 */
export function tinyDecoderFor(model: InstalledModel, vaes: readonly InstalledVae[]): InstalledVae | undefined {
  const sdxl = /xl/i.test(model.type);
  return vaes.find((vae) => vae.type === 'AutoencoderTiny' && /xl/i.test(vae.name) === sdxl);
}

async function isSafetyCheckerFolder(dir: string): Promise<boolean> {
  const config = await readJsonIfPresent(join(dir, 'config.json')).catch(() => undefined);
  return Array.isArray(config?.architectures) && config.architectures.includes('StableDiffusionSafetyChecker');
}

/** Every directory under `modelsDir` (dot-directories aside), as a usable model, a VAE, an upscaler, or with the reason it is none. */
export async function scanModels(
  modelsDir: string = defaultModelsDir(),
): Promise<{ models: InstalledModel[]; vaes: InstalledVae[]; upscalers: InstalledUpscaler[]; skipped: SkippedModel[] }> {
  const entries = await readdir(modelsDir, { withFileTypes: true }).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return [];
    throw error;
  });
  const models: InstalledModel[] = [];
  const vaes: InstalledVae[] = [];
  const upscalers: InstalledUpscaler[] = [];
  const skipped: SkippedModel[] = [];
  for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    if (!entry.isDirectory() || entry.name.startsWith('.')) continue;
    const dir = join(modelsDir, entry.name);
    // The safety checker (SAFETY_CHECKER) may be imported beside the models; it is none of them.
    if (await isSafetyCheckerFolder(dir)) continue;
    try {
      const upscaler = await readUpscalerFolder(dir);
      if (upscaler) upscalers.push(upscaler);
      else if (isVaeFolder(dir)) vaes.push(await describeInstalledVae(dir));
      else models.push(await describeInstalledModel(dir));
    } catch (error) {
      skipped.push({ name: entry.name, dir, reason: (error as Error).message.replace(`${resolve(dir)} `, '') });
    }
  }
  return { models, vaes, upscalers, skipped };
}

/** The usable models under `modelsDir` (default `<repo>/models`), sorted by name. */
export async function listInstalledModels(modelsDir: string = defaultModelsDir()): Promise<InstalledModel[]> {
  return (await scanModels(modelsDir)).models;
}

/** The VAE for `--vae`: a folder (vae_decoder/ inside), or the name of a VAE installed under `modelsDir`. */
export async function resolveVae(requested: string, modelsDir: string = defaultModelsDir()): Promise<InstalledVae> {
  const asPath = resolve(requested);
  if (existsSync(join(asPath, 'vae_decoder', 'model.onnx'))) return describeInstalledVae(asPath);
  if (MODEL_NAME.test(requested)) {
    const { vaes } = await scanModels(modelsDir);
    const vae = vaes.find((candidate) => candidate.name === requested);
    if (vae) return vae;
    const names = vaes.map((candidate) => candidate.name).join(', ');
    throw new Error(`No VAE is called "${requested}" in ${modelsDir}. ${names ? `Installed VAEs: ${names}.` : 'Import one with: npm run model:import -- <VAE folder or file>.'}`);
  }
  throw new Error(`${requested} is not a VAE folder (no vae_decoder/model.onnx)`);
}

/** The installed model called `name`; anything that is not the name of one (a path, say) is refused. */
export async function resolveInstalledModel(name: string, modelsDir: string = defaultModelsDir()): Promise<InstalledModel> {
  if (typeof name !== 'string' || !MODEL_NAME.test(name)) throw new Error(`"${name}" is not the name of an installed model`);
  const { models, skipped } = await scanModels(modelsDir);
  const model = models.find((candidate) => candidate.name === name);
  if (model) return model;
  const broken = skipped.find((candidate) => candidate.name === name);
  if (broken) throw new Error(`Model "${name}" cannot be used: ${broken.reason}`);
  const installed = models.map((candidate) => candidate.name).join(', ');
  throw new Error(`No installed model is called "${name}". ${installed ? `Installed: ${installed}.` : 'None is installed (npm run model:pull -- --list).'}`);
}
