import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { ensureTinyModel } from '../tiny-model/index.ts';

export interface ResolvedModel {
  dir: string;
  /** Said to the user when the choice needs explaining (the tiny model draws noise). */
  notice?: string;
}

export const TINY_MODEL_NOTICE =
  'No model configured (--model or SD_MODEL_DIR), so the built-in tiny test model is used: it draws noise, not pictures. ' +
  'For real images put a Stable Diffusion ONNX export (diffusers layout) in models/<name> and pass --model models/<name> or set SD_MODEL_DIR.';

/** The model to use: the one asked for, else SD_MODEL_DIR, else the generated tiny model. */
export async function resolveModelDir(requested: string | undefined): Promise<ResolvedModel> {
  const configured = requested ?? (process.env.SD_MODEL_DIR || undefined);
  if (configured !== undefined) {
    const dir = resolve(configured);
    if (!existsSync(dir)) throw new Error(`Model directory ${dir} does not exist`);
    return { dir };
  }
  return { dir: await ensureTinyModel(), notice: TINY_MODEL_NOTICE };
}
