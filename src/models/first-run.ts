import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { HubSettings } from './hub-client.ts';
import { defaultModelsDir } from './installed.ts';
import { PRESETS, findPreset } from './presets.ts';
import { PullProgress } from './pull-progress.ts';
import { pullModel, type PullEvent } from './pull.ts';

/** What `npm start` says when no real model is installed. */
export const FIRST_RUN_HELP =
  'No Stable Diffusion model is installed, so the bot would only have its built-in tiny test model, which draws noise. ' +
  'Download a real one with `npm run model:pull -- sd-turbo` (SD-Turbo, about 2.6 GB, one-step images on CPU or GPU); ' +
  '`npm run model:pull -- --list` shows the other presets, and any diffusers ONNX repository id works too ' +
  '(set HF_TOKEN for gated or private repositories, HF_ENDPOINT for a mirror). ' +
  'Then start again, or set AUTO_PULL=sd-turbo so that `npm start` downloads it by itself first.';

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
  if (!preset) throw new Error(`AUTO_PULL=${presetName} is not a preset; use one of ${PRESETS.map((p) => p.name).join(', ')}`);
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
