// npm run model:list — the models installed under models/ (MODELS_DIR), and which one is the default.
import { basename } from 'node:path';
import { config as loadDotenv } from 'dotenv';
import { resolveModelDir } from '../models/default-model.ts';
import { defaultModelsDir, type InstalledModel, scanModels } from '../models/installed.ts';
import { vaeName } from '../pipeline/model-config.ts';
import { displayPath, formatBytes } from '../models/pull.ts';
import { formatTable } from './table.ts';
import { runCli, UsageError, type CommandLine, type CommandSpec, type Flag } from './command-line.ts';

const SPEC = {
  name: 'model:list',
  command: 'npm run model:list',
  usage: '',
  description:
    'Lists the models installed under models/ (MODELS_DIR) with their type, precision, size, scheduler and native size,\n' +
    'the folders that are not usable models with the reason, and the default model (marked *).',
  flags: {},
  notes: ['The default is SD_MODEL_DIR when set, else the only installed model.'],
} satisfies CommandSpec<Record<string, Flag>>;

async function main({ positionals }: CommandLine<typeof SPEC.flags>): Promise<number> {
  loadDotenv({ quiet: true });
  if (positionals.length > 0) throw new UsageError(`model:list takes no arguments (got "${positionals[0]}")`);
  const modelsDir = defaultModelsDir();
  const shownDir = displayPath(modelsDir);
  const { models, vaes, upscalers, skipped } = await scanModels(modelsDir);
  const chosen = await resolveModelDir(undefined, modelsDir).catch((error: Error) => ({ dir: '', notice: undefined, error }));
  if (models.length === 0) {
    process.stdout.write(`No models in ${shownDir}/. Pull one with: npm run model:pull -- sd-turbo   (presets: npm run model:pull -- --list)\n`);
  } else {
    const header = ['', 'name', 'type', 'precision', 'size', 'scheduler', 'native size', 'source'];
    const rows = models.map((model) => [
      model.dir === chosen.dir ? '*' : '',
      model.name,
      model.type,
      model.precision,
      formatBytes(model.bytes),
      model.defaultScheduler,
      `${model.nativeWidth}x${model.nativeHeight}${model.info.fixedSize ? ' (fixed)' : ''}`,
      sourceOf(model),
    ]);
    process.stdout.write(formatTable(header, rows));
  }
  if (vaes.length > 0) {
    process.stdout.write(`\nVAEs (npm run imagine -- … --vae NAME):\n`);
    process.stdout.write(formatTable(['name', 'type', 'precision', 'size', 'source'], vaes.map((vae) => [vae.name, vae.type, vae.precision, formatBytes(vae.bytes), vae.imported ? basename(vae.imported.source) : ''])));
  }
  if (upscalers.length > 0) {
    process.stdout.write(`\nUpscalers (the Upscale buttons; UPSCALER=NAME picks one):\n`);
    process.stdout.write(formatTable(['name', 'file', 'size'], upscalers.map((upscaler) => [upscaler.name, basename(upscaler.file), formatBytes(upscaler.bytes)])));
  }
  for (const model of skipped) process.stdout.write(`skipped ${displayPath(model.dir)}: ${model.reason}\n`);

  const defaultModel = models.find((model) => model.dir === chosen.dir);
  let line: string;
  if ('error' in chosen) line = `none: ${chosen.error.message}`;
  else if (chosen.notice) line = `the tiny test model. ${chosen.notice}`;
  else if (defaultModel) line = `${defaultModel.name} (${process.env.SD_MODEL_DIR ? 'SD_MODEL_DIR' : 'the only installed model'})`;
  else line = `${chosen.dir} (SD_MODEL_DIR)`;
  process.stdout.write(`\nDefault: ${line}\n`);
  return 0;
}

/** Where a model came from: the pulled repository, or the imported source with its LoRAs and VAE. */
function sourceOf(model: InstalledModel): string {
  if (model.source) return `${model.source.repo}${model.source.commit ? `@${model.source.commit.slice(0, 10)}` : ''}`;
  if (!model.imported) return '';
  const loras = model.imported.loras.map((lora) => ` + LoRA ${lora.name} ${lora.weight}`).join('');
  const vae = model.imported.vae ? ` + VAE ${vaeName(model.imported.vae.source)}` : '';
  return `${basename(model.imported.source)}${loras}${vae}`;
}

runCli(SPEC, main);
