import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { writeTinyModel } from '../../src/tiny-model/index.ts';

/** The repository files that are not part of the ONNX model and must not be downloaded. */
export const UNWANTED_FILES = [
  '.gitattributes',
  'README.md',
  'Sample.png',
  'unet/diffusion_pytorch_model.safetensors',
  'unet/model_fp16.onnx',
  'unet/model_fp16.onnx_data',
  'text_encoder/model.safetensors',
  'tokenizer/model.onnx',
  'safety_checker/model.onnx',
  'safety_checker/config.json',
  'feature_extractor/preprocessor_config.json',
  'controlnet/model.onnx',
  'unet/extra/model.onnx',
];

/**
 * The tiny model laid out as a hub repository: its diffusers files (U-Net weights in unet/weights.pb, an empty
 * tokenizer/added_tokens.json) among files a real repository also carries and a pull must leave out.
 */
export async function tinyRepoFiles(): Promise<Map<string, Buffer>> {
  const dir = await mkdtemp(join(tmpdir(), 'tiny-repo-'));
  try {
    await writeTinyModel(dir, { unetExternalData: 'weights.pb' });
    const files = new Map<string, Buffer>();
    for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
      if (entry.isFile()) files.set(relative(dir, join(entry.parentPath, entry.name)).split('\\').join('/'), await readFile(join(entry.parentPath, entry.name)));
    }
    files.set('tokenizer/added_tokens.json', Buffer.alloc(0));
    for (const path of UNWANTED_FILES) files.set(path, path.endsWith('.md') || path.startsWith('.') ? Buffer.from(`# ${path}\n`) : randomBytes(2048));
    return files;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The paths a pull of the tiny repository must produce. */
export function wantedPaths(files: Map<string, Buffer>): string[] {
  return [...files.keys()].filter((path) => !UNWANTED_FILES.includes(path)).sort();
}
