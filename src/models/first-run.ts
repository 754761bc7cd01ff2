import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { HubSettings } from './hub-client.ts';
import { defaultModelsDir } from './installed.ts';
import { PIPELINE_PRESETS, findPreset } from './presets.ts';
import { PullProgress } from './pull-progress.ts';
import { pullModel, type PullEvent } from './pull.ts';

const TINY_OPT_IN = 'To run on the built-in tiny test model anyway (it draws noise, not pictures: for trying the bot out), set SD_MODEL_DIR=tiny.';

/** Why `npm start` (or `npm run worker`) will not go live without a chosen real model, and what to do. */
export function noModelHelp(installed: readonly string[]): string {
  if (installed.length > 1) {
    return `Several models are installed (${installed.join(', ')}) and none is the default: set SD_MODEL_DIR to one of them (e.g. SD_MODEL_DIR=${installed[0]}). ${TINY_OPT_IN}`;
  }
  return (
    'No Stable Diffusion model is installed, so the bot does not start. ' +
    'Download one with `npm run model:pull -- sd-turbo` (SD-Turbo, about 2.6 GB, one-step images on CPU or GPU); ' +
    '`npm run model:pull -- --list` shows the other presets, and any diffusers ONNX repository id works too ' +
    '(set HF_TOKEN for gated or private repositories, HF_ENDPOINT for a mirror). ' +
    `Then start again, or set AUTO_PULL=sd-turbo so that it downloads the model by itself first. ${TINY_OPT_IN}`
  );
}

export interface AutoPullOptions {
  /** Preset name; default process.env.AUTO_PULL. */
  preset?: string;
  modelsDir?: string;
  hub?: HubSettings;
  /** Default: a progress display on stderr. */
  onEvent?: (event: PullEvent) => void;
  signal?: AbortSignal;
}

/**
 * Pulls the AUTO_PULL preset into models/<preset> unless it is installed already, and returns that directory;
 * returns undefined when AUTO_PULL is not set. An unknown preset name is an error.
 */
export async function autoPull(options: AutoPullOptions = {}): Promise<string | undefined> {
  const presetName = (options.preset ?? process.env.AUTO_PULL ?? '').trim();
  if (presetName === '') return undefined;
  const preset = findPreset(presetName);
  if (preset?.kind !== 'pipeline') throw new Error(`AUTO_PULL=${presetName} is not a preset; use one of ${PIPELINE_PRESETS.map((p) => p.name).join(', ')}`);
  const modelsDir = options.modelsDir ?? defaultModelsDir();
  const dir = join(modelsDir, preset.name);
  if (existsSync(dir)) return dir;

  await mkdir(modelsDir, { recursive: true });
  const progress = options.onEvent ? undefined : new PullProgress(process.stderr);
  try {
    const result = await pullModel(
      { repo: preset.repo, revision: preset.revision, subfolder: preset.subfolder, name: preset.name, modelsDir },
      { hub: options.hub, onEvent: options.onEvent ?? progress!.onEvent, signal: options.signal },
    );
    return result.dir;
  } finally {
    progress?.finish();
  }
}
