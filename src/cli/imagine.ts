// npm run imagine -- "<prompt>" [--negative "<text>"] [--seed N] [--steps N] [--guidance X] [--size WxH]
//                    [--scheduler NAME] [--model DIR] [--vae DIR|NAME] [--out FILE.png]
import { writeFile } from 'node:fs/promises';
import { config as loadDotenv } from 'dotenv';
import type { GenerateRequest } from '../pipeline/types.ts';
import { resolveModelDir } from '../models/default-model.ts';
import { resolveVae } from '../models/installed.ts';
import { PipelineThread } from '../worker/pipeline-thread.ts';
import { UsageError, parseCommandLineArgs } from './command-line.ts';
import { ProgressBar } from './progress-bar.ts';

const USAGE = `Usage: npm run imagine -- "<prompt>" [--negative "<text>"] [--seed N] [--steps N] [--guidance X]
                          [--size WxH] [--scheduler NAME] [--model DIR] [--vae DIR|NAME] [--out FILE.png]
  --vae DIR|NAME   decode with another VAE: a VAE imported with npm run model:import (e.g. TAESD, much faster)`;

interface CliArguments {
  request: GenerateRequest;
  model: string | undefined;
  vae: string | undefined;
  out: string | undefined;
}

function parseCommandLine(argv: string[]): CliArguments {
  const { values, positionals } = parseCommandLineArgs(argv, {
    negative: { type: 'string' },
    seed: { type: 'string' },
    steps: { type: 'string' },
    guidance: { type: 'string' },
    size: { type: 'string' },
    scheduler: { type: 'string' },
    model: { type: 'string' },
    vae: { type: 'string' },
    out: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  if (positionals.length !== 1) {
    throw new UsageError(positionals.length === 0 ? 'a prompt is required' : `expected one prompt, got ${positionals.length} (quote the prompt)`);
  }
  const size = values.size === undefined ? undefined : parseSize(values.size);
  return {
    request: {
      prompt: positionals[0],
      negativePrompt: values.negative,
      seed: values.seed === undefined ? undefined : parseSeedArgument(values.seed),
      steps: values.steps === undefined ? undefined : parseNumber('--steps', values.steps, true),
      guidanceScale: values.guidance === undefined ? undefined : parseNumber('--guidance', values.guidance, false),
      width: size?.width,
      height: size?.height,
      scheduler: values.scheduler,
    },
    model: values.model,
    vae: values.vae,
    out: values.out,
  };
}

function parseSize(text: string): { width: number; height: number } {
  const match = /^(\d+)x(\d+)$/i.exec(text.trim());
  if (!match) throw new UsageError(`--size must look like 512x512 (got "${text}")`);
  return { width: Number(match[1]), height: Number(match[2]) };
}

function parseSeedArgument(text: string): string {
  if (!/^\d+$/.test(text.trim())) throw new UsageError(`--seed must be a whole number from 0 to 2^64-1 (got "${text}")`);
  return text.trim();
}

function parseNumber(flag: string, text: string, integer: boolean): number {
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value) || (integer && !Number.isInteger(value))) {
    throw new UsageError(`${flag} must be a ${integer ? 'whole number' : 'number'} (got "${text}")`);
  }
  return value;
}

async function main(): Promise<number> {
  loadDotenv({ quiet: true });
  const args = parseCommandLine(process.argv.slice(2));
  const model = await resolveModelDir(args.model);
  if (model.notice) process.stderr.write(`${model.notice}\n`);
  const vae = args.vae === undefined ? undefined : await resolveVae(args.vae);

  const pipeline = PipelineThread.start({ modelDir: model.dir, vaeDir: vae?.dir, executionProvider: executionProviderFromEnv() });
  const controller = new AbortController();
  process.once('SIGINT', () => controller.abort());
  const progress = new ProgressBar(process.stderr);
  try {
    const info = await pipeline.ready;
    process.stderr.write(`Loaded ${info.name}${vae ? ` with the VAE ${vae.name} (${vae.type})` : ''}\n`);
    const result = await pipeline.generate(args.request, {
      signal: controller.signal,
      onStep: ({ step, totalSteps }) => progress.update(step, totalSteps),
    });
    progress.finish();
    const out = args.out ?? `imagine-${result.settings.seed}.png`;
    await writeFile(out, result.png);
    const seconds = (result.timings.totalMs / 1000).toFixed(1);
    process.stdout.write(`Seed: ${result.settings.seed}\nSaved ${out} (${result.settings.width}x${result.settings.height}, ${result.settings.steps} steps, ${result.settings.scheduler}) in ${seconds} s\n`);
    return 0;
  } finally {
    progress.finish();
    await pipeline.dispose();
  }
}

function executionProviderFromEnv() {
  const value = process.env.EXECUTION_PROVIDER;
  if (value === undefined || value === '') return undefined;
  const supported = ['cpu', 'cuda', 'dml', 'coreml', 'webgpu'] as const;
  const match = supported.find((name) => name === value);
  if (!match) throw new Error(`EXECUTION_PROVIDER must be one of ${supported.join(', ')} (got "${value}")`);
  return match;
}

main().then(
  (code) => process.exit(code),
  (error: Error) => {
    process.stderr.write(`imagine: ${error.message}${error instanceof UsageError ? ' (see --help)' : ''}\n`);
    process.exit(error.name === 'AbortError' ? 130 : error instanceof UsageError ? 2 : 1);
  },
);
