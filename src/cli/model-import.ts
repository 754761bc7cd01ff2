// npm run model:import -- SOURCE [options]   (--help lists them)
import { mkdir } from 'node:fs/promises';
import { config as loadDotenv } from 'dotenv';
import { type ImportRequest, importModel } from '../import/import-model.ts';
import type { LoraRequest } from '../import/lora.ts';
import { defaultModelsDir } from '../models/installed.ts';
import { displayPath, formatBytes } from '../models/pull.ts';
import { runCli, UsageError, type CommandLine, type CommandSpec, type Flag } from './command-line.ts';
import { ImportProgress } from './import-progress.ts';

const SPEC = {
  name: 'model:import',
  command: 'npm run model:import --',
  usage: 'SOURCE [options]',
  description:
    "Builds the pipeline's ONNX graphs from a PyTorch Stable Diffusion model (SD 1.x / 2.x) into models/NAME.\n" +
    'SOURCE: a diffusers folder (model_index.json, text_encoder/, unet/, vae/ with .safetensors weights), a single-file\n' +
    'checkpoint .safetensors (AUTOMATIC1111 / ComfyUI format), or a VAE folder (AutoencoderKL or AutoencoderTiny, e.g.\n' +
    'TAESD), which becomes a VAE for --vae.',
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
      help: 'Merge a LoRA (kohya / AUTOMATIC1111 or diffusers / PEFT format) at WEIGHT (default 1).',
    },
    force: { type: 'boolean', help: 'Replace an installed model of the same name.' },
  },
  notes: ['MODELS_DIR: where models go (default: models/ in the project).'],
} satisfies CommandSpec<Record<string, Flag>>;

function parseLora(text: string): LoraRequest {
  const colon = text.lastIndexOf(':');
  const weighted = colon >= 0 && /^-?\d+(\.\d+)?$/.test(text.slice(colon + 1));
  const path = weighted ? text.slice(0, colon) : text;
  if (path === '') throw new UsageError(`--lora must be FILE or FILE:WEIGHT (got "${text}")`);
  return { path, weight: weighted ? Number(text.slice(colon + 1)) : 1 };
}

function readCommandLine({ values, positionals }: CommandLine<typeof SPEC.flags>): ImportRequest {
  if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? 'name the model to import (a folder or a .safetensors file)' : `expected one SOURCE, got ${positionals.length}`);
  const prediction = values.prediction;
  if (prediction !== undefined && !['epsilon', 'v', 'v_prediction'].includes(prediction)) throw new UsageError(`--prediction must be epsilon or v (got "${prediction}")`);
  const precision = values.precision;
  if (precision !== undefined && precision !== 'fp32' && precision !== 'fp16') throw new UsageError(`--precision must be fp32 or fp16 (got "${precision}")`);
  return {
    source: positionals[0],
    name: values.name,
    configDir: values.config,
    prediction: prediction === undefined ? undefined : prediction === 'epsilon' ? 'epsilon' : 'v_prediction',
    precision,
    vae: values.vae,
    loras: (values.lora ?? []).map(parseLora),
    force: values.force ?? false,
  };
}

async function main(commandLine: CommandLine<typeof SPEC.flags>): Promise<number> {
  loadDotenv({ quiet: true });
  const request = readCommandLine(commandLine);
  const modelsDir = defaultModelsDir();
  await mkdir(modelsDir, { recursive: true });
  const progress = new ImportProgress(process.stderr);
  try {
    const result = await importModel({ ...request, modelsDir }, { onEvent: progress.onEvent });
    progress.finish();
    const shown = displayPath(result.dir);
    const loras = result.loras.length > 0 ? `, with LoRA ${result.loras.map((lora) => `${lora.name} at ${lora.weight}`).join(', ')}` : '';
    process.stdout.write(`Imported ${result.name} (${result.description}${loras}) into ${shown}: ${formatBytes(result.bytes)}.\n`);
    process.stdout.write(
      result.kind === 'vae'
        ? `Decode with it: npm run imagine -- "a lighthouse at dusk" --vae ${result.name}\n`
        : `Try it: npm run imagine -- "a lighthouse at dusk" --model ${shown}\n`,
    );
    return 0;
  } finally {
    progress.finish();
  }
}

runCli(SPEC, main);
