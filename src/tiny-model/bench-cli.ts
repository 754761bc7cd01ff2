import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { runCli, UsageError, type CommandLine, type CommandSpec, type Flag } from '../cli/command-line.ts';
import { PROJECT_ROOT } from '../runtime.ts';
import { writeBenchCheckpoint } from './bench-checkpoint.ts';
import { LCM_CONFIGS, SDXL_CONFIGS, SD_TURBO_CONFIGS, writeBenchModel, writeBenchTinyVae } from './bench-model.ts';

const SPEC = {
  name: 'model:bench-build',
  command: 'npm run model:bench-build --',
  usage: '[--sdxl] [options]   |   --checkpoint FILE.safetensors [--fp32] [--seed N] [--force]',
  description:
    "Writes a model with Stable Diffusion 1.5's (or SDXL's) architecture and random weights: the diffusers ONNX folder the pipeline\n" +
    'loads (attention unfused as hub exports are, or fused as model:import writes it), or with --checkpoint a single-file\n' +
    'checkpoint with the original key names (float16, or float32 with --fp32) to measure model:import on.',
  flags: {
    out: { type: 'string', value: 'DIR', help: 'Where to write the ONNX folder.', default: 'models/sd15-bench, or models/sdxl-bench with --sdxl' },
    sdxl: { type: 'boolean', help: "SDXL base's architecture: two text encoders, the 2.6-billion-parameter U-Net (13.9 GB in fp32)." },
    fp16: { type: 'boolean', help: 'Float16 weights.' },
    turbo: { type: 'boolean', help: "SD-Turbo's architecture (SD 2.1 at 512x512) and 1-step scheduler instead of SD 1.5's." },
    'fused-attention': { type: 'boolean', help: 'Attention fused, as model:import writes it.' },
    lcm: { type: 'boolean', help: "LCM Dreamshaper v7's architecture: SD 1.5's U-Net with the guidance embedding, the LCM scheduler (default out: models/lcm-bench)." },
    taesd: { type: 'boolean', help: "Only a tiny decoder with TAESD's architecture, a VAE folder to load beside a model (default out: models/taesd-bench)." },
    checkpoint: { type: 'string', value: 'FILE', help: 'Write a single-file .safetensors checkpoint instead.' },
    fp32: { type: 'boolean', help: 'With --checkpoint: float32 weights (default float16).' },
    tokenizer: { type: 'string', value: 'DIR', help: 'A CLIP tokenizer folder (vocab.json, merges.txt).', default: "CLIP's from ../shared/fixtures when there, else the tiny model's" },
    seed: { type: 'string', value: 'N', help: 'Seed of the random weights.', default: 'a fixed one' },
    force: { type: 'boolean', help: 'Write it again when it is already there.' },
  },
} satisfies CommandSpec<Record<string, Flag>>;

/** CLIP's real vocabulary, from the reference fixtures beside the project when they are there. */
const fixtureTokenizer = resolve(process.env.SHARED_FIXTURES_DIR ?? join(PROJECT_ROOT, '..', 'shared', 'fixtures'), 'tokenizer');

async function main({ values }: CommandLine<typeof SPEC.flags>): Promise<number> {
  const seed = values.seed === undefined ? undefined : Number(values.seed);
  if (seed !== undefined && !Number.isInteger(seed)) throw new UsageError(`--seed must be a whole number (got "${values.seed}")`);
  if (values.sdxl && values.checkpoint !== undefined) throw new UsageError('--sdxl writes the ONNX folder; --checkpoint writes SD 1.5-size checkpoints only');
  if (values.checkpoint !== undefined) {
    const path = resolve(values.checkpoint);
    if (existsSync(path) && !values.force) {
      console.log(`The benchmark checkpoint is already at ${path} (--force writes it again)`);
      return 0;
    }
    const started = performance.now();
    const dtype = values.fp32 ? 'F32' : 'F16';
    console.log(`Writing an SD 1.5-size single-file checkpoint with random weights (${dtype}) to ${path}`);
    const summary = await writeBenchCheckpoint(path, { dtype, seed });
    console.log(`Done in ${((performance.now() - started) / 1000).toFixed(1)} s: ${summary.tensors} tensors, ${(summary.bytes / 1e9).toFixed(2)} GB`);
    console.log(`Import it with: npm run model:import -- ${relative(process.cwd(), path)} --name sd15-import-bench`);
    return 0;
  }
  if (values.taesd) {
    const dir = resolve(values.out ?? join(PROJECT_ROOT, 'models', 'taesd-bench'));
    if (existsSync(join(dir, 'vae_decoder')) && !values.force) {
      console.log(`The benchmark tiny decoder is already in ${dir} (--force writes it again)`);
      return 0;
    }
    if (values.force) await rm(dir, { recursive: true, force: true });
    const written = await writeBenchTinyVae(dir, seed);
    console.log(`Wrote a TAESD-size tiny decoder to ${dir}: ${(written.parameters / 1e6).toFixed(2)}M parameters (encoder and decoder), ${(written.bytes / 1e6).toFixed(1)} MB`);
    console.log(`Benchmark it with: npm run bench -- --model DIR --tiny-vae ${relative(process.cwd(), dir)}`);
    return 0;
  }
  const dir = resolve(values.out ?? join(PROJECT_ROOT, 'models', values.lcm ? 'lcm-bench' : values.turbo ? 'sd-turbo-bench' : values.sdxl ? 'sdxl-bench' : 'sd15-bench'));
  if (existsSync(join(dir, 'model_index.json')) && !values.force) {
    console.log(`The benchmark model is already in ${dir} (--force writes it again)`);
    return 0;
  }
  const tokenizerDir = values.tokenizer ?? (existsSync(join(fixtureTokenizer, 'vocab.json')) ? fixtureTokenizer : undefined);
  if (values.force) await rm(dir, { recursive: true, force: true });

  const started = performance.now();
  const attention = values['fused-attention'] ? 'fused' : 'unfused';
  console.log(`Writing ${values.lcm ? 'an LCM' : values.turbo ? 'an SD-Turbo' : values.sdxl ? 'an SDXL' : 'an SD 1.5'}-size model with random weights (${values.fp16 ? 'fp16' : 'fp32'}, attention ${attention}) to ${dir}`);
  console.log(tokenizerDir ? `Tokenizer: CLIP's vocabulary from ${tokenizerDir}` : "Tokenizer: the tiny model's (CLIP's vocabulary was not found)");
  const summary = await writeBenchModel(dir, {
    precision: values.fp16 ? 'fp16' : 'fp32',
    attention,
    tokenizerDir,
    seed,
    ...(values.lcm && { configs: LCM_CONFIGS }),
    ...(values.turbo && { configs: SD_TURBO_CONFIGS }),
    ...(values.sdxl && { configs: SDXL_CONFIGS }),
    onPart: (part) => console.log(`  ${part}…`),
  });
  const parameters = Object.entries(summary.parameters).map(([part, count]) => `${part} ${(count / 1e6).toFixed(1)}M`);
  console.log(`Done in ${((performance.now() - started) / 1000).toFixed(1)} s: ${parameters.join(', ')} parameters, ${(summary.bytes / 1e9).toFixed(2)} GB`);
  console.log(`Benchmark it with: npm run bench -- --model ${relative(process.cwd(), dir) || '.'}`);
  return 0;
}

runCli(SPEC, main);
