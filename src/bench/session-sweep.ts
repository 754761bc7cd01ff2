// Which onnxruntime session options are fastest here? Runs the U-Net (or VAE decoder) once per option set, each in
// a fresh process, changing one option at a time from the pipeline's defaults (sessionOptions('cpu')).
//   npx tsx src/bench/session-sweep.ts --model DIR [--part unet|vae_decoder] [--size 512x512] [--runs 2] [--json FILE]
import { fork } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type ort from 'onnxruntime-node';
import { sessionOptions } from '../pipeline/onnx-model.ts';
import { formatBytes, formatDuration, formatTable } from './format.ts';
import { describeMachine, type MachineInfo } from './machine.ts';
import { parseCount, parseSize } from './options.ts';
import type { SessionTrial, TrialResult } from './session-trial.ts';
import { min } from './stats.ts';

interface Variant {
  name: string;
  options: ort.InferenceSession.SessionOptions;
  batch?: number;
}

function variants(): Variant[] {
  const base = sessionOptions('cpu');
  return [
    { name: 'defaults', options: base },
    { name: 'intraOpNumThreads 1', options: { ...base, intraOpNumThreads: 1 } },
    { name: 'graphOptimizationLevel extended', options: { ...base, graphOptimizationLevel: 'extended' } },
    { name: 'graphOptimizationLevel basic', options: { ...base, graphOptimizationLevel: 'basic' } },
    { name: 'enableMemPattern false', options: { ...base, enableMemPattern: false } },
    { name: 'enableCpuMemArena false', options: { ...base, enableCpuMemArena: false } },
    { name: 'intra-op spinning off', options: { ...base, extra: { session: { intra_op: { allow_spinning: '0' } } } } },
    { name: 'defaults, batch 1 (half a CFG step)', options: base, batch: 1 },
  ];
}

function runInChild(trial: SessionTrial): Promise<TrialResult> {
  return new Promise((resolvePromise, reject) => {
    const child = fork(new URL('./session-trial.ts', import.meta.url), [JSON.stringify(trial)], { stdio: 'inherit' });
    let settled = false;
    child.on('message', (message: { result?: TrialResult; error?: string }) => {
      settled = true;
      if (message.result) resolvePromise(message.result);
      else reject(new Error(message.error ?? 'trial failed'));
    });
    child.on('exit', (code) => {
      if (!settled) reject(new Error(`trial process exited with code ${code}`));
    });
  });
}

interface SweepRow {
  variant: string;
  options: ort.InferenceSession.SessionOptions;
  batch: number;
  loadAverage: number;
  result: TrialResult;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      part: { type: 'string', default: 'unet' },
      size: { type: 'string', default: '512x512' },
      runs: { type: 'string', default: '2' },
      json: { type: 'string' },
      only: { type: 'string' },
    },
  });
  if (!values.model) throw new Error('--model DIR is required');
  if (values.part !== 'unet' && values.part !== 'vae_decoder') throw new Error(`--part must be unet or vae_decoder (got ${values.part})`);
  const { width, height } = parseSize(values.size);
  const runs = parseCount('runs', values.runs);
  const machine: MachineInfo = describeMachine('cpu');
  const chosen = variants().filter((variant) => !values.only || values.only.split(',').some((name) => variant.name.includes(name.trim())));

  const rows: SweepRow[] = [];
  for (const variant of chosen) {
    if (values.part === 'vae_decoder' && variant.batch) continue;
    const batch = variant.batch ?? 2;
    const loadAverage = describeMachine('cpu').loadAverage;
    console.error(`${variant.name}…`);
    const result = await runInChild({ modelDir: resolve(values.model), part: values.part, options: variant.options, width, height, batch, runs });
    rows.push({ variant: variant.name, options: variant.options, batch, loadAverage, result });
  }

  console.log(`${values.part} at ${width}x${height}, ${runs} runs per option set, each in a fresh process`);
  console.log(`${machine.cpuModel}, ${machine.cores} cores, onnxruntime-node ${machine.onnxruntime}\n`);
  console.log(
    formatTable(
      ['options', 'load', 'first run', 'best run', 'RSS after load', 'peak RSS', 'load avg'],
      rows.map(({ variant, result, loadAverage }) => [
        variant,
        formatDuration(result.loadMs),
        formatDuration(result.runMs[0]),
        formatDuration(min(result.runMs)),
        formatBytes(result.rssAfterLoadBytes),
        formatBytes(result.peakRssBytes),
        loadAverage.toFixed(1),
      ]),
    ),
  );
  if (values.json) writeFileSync(values.json, JSON.stringify({ part: values.part, width, height, runs, machine, rows }, null, 2) + '\n');
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
