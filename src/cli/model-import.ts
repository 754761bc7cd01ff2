// npm run model:import -- SOURCE [options]   (--help lists them)
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { config as loadDotenv } from 'dotenv';
import { CLIP_TOKENIZER_REPO, clipTokenizerFromHub } from '../import/clip-tokenizer.ts';
import { type ImportRequest, type ImportResult, defaultImportName, importModel } from '../import/import-model.ts';
import { importSafetyChecker } from '../import/safety-checker.ts';
import type { LoraRequest } from '../import/lora.ts';
import { checkModelName, defaultModelsDir } from '../models/installed.ts';
import { PullProgress } from '../models/pull-progress.ts';
import { defaultModelName, displayPath, formatBytes, pullModel } from '../models/pull.ts';
import { runCli, UsageError, type CommandLine, type CommandSpec, type Flag } from './command-line.ts';
import { ImportProgress } from './import-progress.ts';

const SPEC = {
  name: 'model:import',
  command: 'npm run model:import --',
  usage: 'SOURCE [options]',
  description:
    "Builds the pipeline's ONNX graphs from a PyTorch Stable Diffusion model (SD 1.x, 2.x or XL) into models/NAME.\n" +
    'SOURCE: a diffusers folder (model_index.json, text_encoder/, unet/, vae/ with .safetensors weights), a single-file\n' +
    'checkpoint .safetensors (AUTOMATIC1111 / ComfyUI format), a VAE folder (AutoencoderKL or AutoencoderTiny, e.g.\n' +
    'TAESD), which becomes a VAE for --vae, or a Hugging Face hub repository owner/name of such a model (downloaded and\n' +
    'verified as model:pull does).',
  flags: {
    name: { type: 'string', value: 'NAME', help: 'Folder under models/.', default: "the source's name" },
    config: {
      type: 'string',
      value: 'DIR',
      help: 'A diffusers folder whose configs describe a single-file checkpoint (non-standard sizes; also gives its tokenizer and scheduler).',
    },
    prediction: { type: 'string', value: 'P', help: 'epsilon or v (for 768-v models when the file cannot tell).' },
    precision: { type: 'string', value: 'P', help: 'fp32 (for the CPU) or fp16 (for GPUs).', default: 'fp32' },
    vae: { type: 'string', value: 'SOURCE', help: "Use this VAE (folder or .safetensors) instead of the model's own." },
    lora: {
      type: 'string',
      multiple: true,
      value: 'FILE[:WEIGHT]',
      help: 'Merge a LoRA (kohya / AUTOMATIC1111 or diffusers / PEFT format) at WEIGHT (default 1). An LCM-LoRA (a file or folder named lcm…) makes a 4-step model sampled with LCM.',
    },
    revision: { type: 'string', value: 'REV', help: 'Branch, tag or commit of a hub repository.', default: 'main' },
    subfolder: { type: 'string', value: 'DIR', help: 'Folder of a hub repository that holds the model.' },
    scheduler: { type: 'string', value: 'NAME', help: 'The model\'s own scheduler (e.g. "Euler a", "DPM++ 2M Karras", LCM), built from its config.' },
    force: { type: 'boolean', help: 'Replace an installed model of the same name.' },
    'safety-checker': {
      type: 'boolean',
      help: "SOURCE is a safety checker folder (diffusers' StableDiffusionSafetyChecker: config.json + model.safetensors); the folder written is what SAFETY_CHECKER takes.",
    },
  },
  notes: [
    'MODELS_DIR: where models go (default: models/ in the project). HF_TOKEN, HF_ENDPOINT: as for model:pull.',
    `A single-file checkpoint without --config takes CLIP's tokenizer from a model installed beside it, else from the hub (${CLIP_TOKENIZER_REPO}).`,
  ],
} satisfies CommandSpec<Record<string, Flag>>;

/** What to import, and, when SOURCE is a hub repository rather than a path, where to download it from. */
interface ImportCommand {
  request: ImportRequest;
  hub?: { repo: string; revision?: string; subfolder?: string };
}

function parseLora(text: string): LoraRequest {
  const colon = text.lastIndexOf(':');
  const weighted = colon >= 0 && /^-?\d+(\.\d+)?$/.test(text.slice(colon + 1));
  const path = weighted ? text.slice(0, colon) : text;
  if (path === '') throw new UsageError(`--lora must be FILE or FILE:WEIGHT (got "${text}")`);
  return { path, weight: weighted ? Number(text.slice(colon + 1)) : 1 };
}

function readCommandLine({ values, positionals }: CommandLine<typeof SPEC.flags>): ImportCommand {
  if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? 'name the model to import (a folder or a .safetensors file)' : `expected one SOURCE, got ${positionals.length}`);
  const prediction = values.prediction;
  if (prediction !== undefined && !['epsilon', 'v', 'v_prediction'].includes(prediction)) throw new UsageError(`--prediction must be epsilon or v (got "${prediction}")`);
  const precision = values.precision;
  if (precision !== undefined && precision !== 'fp32' && precision !== 'fp16') throw new UsageError(`--precision must be fp32 or fp16 (got "${precision}")`);
  const source = positionals[0];
  const fromHub = !existsSync(source) && /^[\w.-]+\/[\w.-]+$/.test(source) && !/\.safetensors$/i.test(source);
  if (!fromHub && (values.revision !== undefined || values.subfolder !== undefined)) throw new UsageError('--revision and --subfolder go with a hub repository (owner/name)');
  const request: ImportRequest = {
    source,
    name: values.name ?? (fromHub ? defaultModelName(source) : undefined),
    configDir: values.config,
    prediction: prediction === undefined ? undefined : prediction === 'epsilon' ? 'epsilon' : 'v_prediction',
    precision,
    vae: values.vae,
    loras: (values.lora ?? []).map(parseLora),
    scheduler: values.scheduler,
    force: values.force ?? false,
  };
  return fromHub ? { request, hub: { repo: source, revision: values.revision, subfolder: values.subfolder } } : { request };
}

async function main(commandLine: CommandLine<typeof SPEC.flags>): Promise<number> {
  loadDotenv({ quiet: true });
  const command = readCommandLine(commandLine);
  const modelsDir = defaultModelsDir();
  await mkdir(modelsDir, { recursive: true });
  if (commandLine.values['safety-checker']) return importSafetyCheckerInto(modelsDir, command.request);
  const progress = new ImportProgress(process.stderr);
  const downloads = new PullProgress(process.stderr);
  const request = { ...command.request, modelsDir };
  const options = {
    onEvent: progress.onEvent,
    tokenizerFor: () => clipTokenizerFromHub(modelsDir, { onEvent: downloads.onEvent }).finally(() => downloads.finish()),
  };
  try {
    let result: ImportResult | undefined;
    if (command.hub) {
      await pullModel(
        { ...command.hub, name: request.name!, modelsDir, force: request.force },
        {
          onEvent: downloads.onEvent,
          requirePytorch: true,
          importPytorch: async (folder, origin) => {
            downloads.finish();
            result = await importModel({ ...request, source: folder, origin }, options);
            return result;
          },
        },
      );
    } else {
      result = await importModel(request, options);
    }
    progress.finish();
    const { name, dir, description, bytes, kind, loras } = result!;
    const shown = displayPath(dir);
    const merged = loras.length > 0 ? `, with LoRA ${loras.map((lora) => `${lora.name} at ${lora.weight}`).join(', ')}` : '';
    process.stdout.write(`Imported ${name} (${description}${merged}) into ${shown}: ${formatBytes(bytes)}.\n`);
    process.stdout.write(
      kind === 'vae' ? `Decode with it: npm run imagine -- "a lighthouse at dusk" --vae ${name}\n` : `Try it: npm run imagine -- "a lighthouse at dusk" --model ${shown}\n`,
    );
    return 0;
  } finally {
    progress.finish();
    downloads.finish();
  }
}

async function importSafetyCheckerInto(modelsDir: string, request: ImportRequest): Promise<number> {
  const name = request.name ?? defaultImportName(request.source);
  checkModelName(name);
  const target = join(modelsDir, name);
  if (existsSync(target) && !request.force) throw new Error(`${target} already exists. Pass --force to replace it, or --name to import under another name.`);
  const { bytes } = await importSafetyChecker(request.source, target, { precision: request.precision });
  process.stdout.write(`Imported the safety checker into ${displayPath(target)}: ${formatBytes(bytes)}.\nUse it: SAFETY_CHECKER=${displayPath(target)}\n`);
  return 0;
}

runCli(SPEC, main);
