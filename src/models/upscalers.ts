import { existsSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';

/** An image upscaler in the models folder: a folder holding one ONNX graph, as `model:pull real-esrgan-x4` installs it. */
export interface InstalledUpscaler {
  name: string;
  dir: string;
  /** The graph. */
  file: string;
  bytes: number;
}

/** What UPSCALER may say instead of a model: upscale with Lanczos alone. */
export const NO_UPSCALER = 'lanczos';

/** Whether a folder is an upscaler's: one .onnx at its top, and none of a Stable Diffusion model's files. */
export async function readUpscalerFolder(dir: string): Promise<InstalledUpscaler | undefined> {
  if (existsSync(join(dir, 'model_index.json'))) return undefined;
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  const graphs = entries.filter((entry) => entry.isFile() && entry.name.toLowerCase().endsWith('.onnx'));
  if (graphs.length !== 1) return undefined;
  const file = join(dir, graphs[0].name);
  return { name: basename(dir), dir, file, bytes: (await stat(file)).size };
}

/** The upscalers installed in `modelsDir`, by name. */
export async function scanUpscalers(modelsDir: string): Promise<InstalledUpscaler[]> {
  const entries = await readdir(modelsDir, { withFileTypes: true }).catch(() => []);
  const found = await Promise.all(
    entries.filter((entry) => entry.isDirectory() && !entry.name.startsWith('.')).map((entry) => readUpscalerFolder(join(modelsDir, entry.name))),
  );
  return found.filter((upscaler) => upscaler !== undefined).sort((a, b) => a.name.localeCompare(b.name));
}

/**
 * The upscaler the Upscale buttons use (UPSCALER): an installed upscaler's name, a folder or .onnx file, or
 * "lanczos" for none; when unset, the only installed upscaler (none: Lanczos). Throws naming what is installed.
 */
export async function resolveUpscaler(choice: string | undefined, modelsDir: string): Promise<InstalledUpscaler | undefined> {
  const wanted = choice?.trim() ?? '';
  if (wanted.toLowerCase() === NO_UPSCALER) return undefined;
  const installed = await scanUpscalers(modelsDir);
  if (wanted === '') return installed.length === 1 ? installed[0] : undefined;
  const byName = installed.find((upscaler) => upscaler.name === wanted);
  if (byName) return byName;
  const path = resolve(wanted);
  if (path.toLowerCase().endsWith('.onnx') && existsSync(path)) return { name: basename(path, '.onnx'), dir: resolve(path, '..'), file: path, bytes: (await stat(path)).size };
  const folder = existsSync(path) ? await readUpscalerFolder(path) : undefined;
  if (folder) return folder;
  const names = installed.map((upscaler) => upscaler.name);
  throw new Error(`UPSCALER=${wanted} is not an installed upscaler (${names.length ? names.join(', ') : 'none installed: npm run model:pull -- real-esrgan-x4'}), an .onnx file, or "${NO_UPSCALER}"`);
}
