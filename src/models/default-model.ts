import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ensureTinyModel } from '../tiny-model/index.ts';
import { defaultModelsDir, listInstalledModels } from './installed.ts';

export interface ResolvedModel {
  dir: string;
  /** Said to the user when the choice needs explaining (the tiny model draws noise). */
  notice?: string;
}

export const TINY_MODEL_NOTICE =
  'No model installed, so the built-in tiny test model is used: it draws noise, not pictures. ' +
  'For real images run `npm run model:pull -- sd-turbo` (see `npm run model:pull -- --list`), or set SD_MODEL_DIR / pass --model.';

/** What SD_MODEL_DIR (or --model) names to choose the generated tiny test model. */
const TINY_MODEL_CHOICE = 'tiny';

/**
 * The model to use: the one asked for (a directory, the name of an installed model, or `tiny`), else SD_MODEL_DIR,
 * else the only model installed under models/, else the generated tiny model with a notice: only then is there a
 * notice, so a caller that must not stand in the tiny model for a real one refuses when it sees one.
 */
export async function resolveModelDir(requested: string | undefined, modelsDir: string = defaultModelsDir()): Promise<ResolvedModel> {
  const configured = requested ?? (process.env.SD_MODEL_DIR || undefined);
  if (configured !== undefined) {
    const dir = resolve(configured);
    if (existsSync(dir)) return { dir };
    const installed = join(modelsDir, configured);
    if (/^[\w.-]+$/.test(configured) && existsSync(installed)) return { dir: installed };
    if (configured === TINY_MODEL_CHOICE) return { dir: await ensureTinyModel() };
    throw new Error(`Model directory ${dir} does not exist`);
  }
  const models = await listInstalledModels(modelsDir);
  if (models.length === 1) return { dir: models[0].dir };
  if (models.length > 1) {
    const names = models.map((model) => model.name).join(', ');
    return {
      dir: await ensureTinyModel(),
      notice: `Several models are installed (${names}) and none is chosen, so the tiny test model is used: it draws noise. Set SD_MODEL_DIR=models/<name> or pass --model <name>.`,
    };
  }
  return { dir: await ensureTinyModel(), notice: TINY_MODEL_NOTICE };
}
