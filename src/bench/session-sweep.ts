// Which onnxruntime session options are fastest here? Runs the U-Net (or VAE decoder) with each option set, changing
// one option at a time from the pipeline's defaults (sessionOptions('cpu'), attention fused), each in a fresh
// process; or, with --interleave, the chosen option sets loaded together in one process and run in turns, which
// holds up better on a machine whose speed drifts (their peak RSS is then of all of them together).
//   npx tsx src/bench/session-sweep.ts --model DIR [--part unet|vae_decoder] [--size 512x512] [--runs 2]
//                                      [--only NAME,NAME] [--interleave] [--json FILE]
import { fork } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type ort from 'onnxruntime-node';
import { runCli, UsageError, usageErrorOf, type CommandLine, type CommandSpec, type Flag } from '../cli/command-line.ts';
import { sessionOptions } from '../pipeline/onnx-model.ts';
import { siblingModule } from '../runtime.ts';
import { formatBytes, formatDuration, formatTable } from './format.ts';
import { describeMachine, type MachineInfo } from './machine.ts';
import { parseBenchSize, parseCount } from './options.ts';
import type { SessionTrial, TrialResult } from './session-trial.ts';
import { median, min } from './stats.ts';

interface Variant {
  name: string;
  options: ort.InferenceSession.SessionOptions;
  batch?: number;
  /** The pipeline fuses attention on the CPU; this turns it off. */
  unfusedAttention?: boolean;
}

function variants(): Variant[] {
  const base = sessionOptions('cpu');
  return [
    { name: 'defaults', options: base },
    { name: 'intraOpNumThreads 1', options: { ...base, intraOpNumThreads: 1 } },
    { name: 'graphOptimizationLevel extended', options: { ...base, graphOptimizationLevel: 'extended' } },
    { name: 'graphOptimizationLevel basic', options: { ...base, graphOptimizationLevel: 'basic' } },
    { name: `enableMemPattern ${!base.enableMemPattern}`, options: { ...base, enableMemPattern: !base.enableMemPattern } },
    { name: `enableCpuMemArena ${!base.enableCpuMemArena}`, options: { ...base, enableCpuMemArena: !base.enableCpuMemArena } },
    { name: 'blocked layout off', options: sessionOptions('cpu', false) },
    { name: 'intra-op spinning off', options: { ...base, extra: { session: { intra_op: { allow_spinning: '0' } } } } },
    { name: 'attention unfused', options: base, unfusedAttention: true },
    { name: 'defaults at batch 1 (half a CFG step)', options: base, batch: 1 },
  ];
}

function runInChild(trial: SessionTrial): Promise<TrialResult> {
  return new Promise((resolvePromise, reject) => {
    const child = fork(siblingModule(import.meta.url, 'session-trial'), [JSON.stringify(trial)], { stdio: 'inherit' });
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
  loadMs: number;
  runMs: number[];
  rssAfterLoadBytes: number;
  peakRssBytes: number;
}

const SPEC = {
  name: 'session-sweep',
  command: 'npx tsx src/bench/session-sweep.ts',
  usage: '--model DIR [options]',
  description:
    "Runs the U-Net (or VAE decoder) under each onnxruntime session option set, one option changed at a time from the\n" +
    "pipeline's defaults, each in a fresh process (or, with --interleave, loaded together and run in turns).",
  flags: {
    model: { type: 'string', value: 'DIR', help: 'The model to measure (required).' },
    part: { type: 'string', value: 'PART', help: 'unet or vae_decoder.', default: 'unet' },
    size: { type: 'string', value: 'WxH', help: 'Image size, in multiples of 8.', default: '512x512' },
    runs: { type: 'string', value: 'N', help: 'Runs per option set.', default: '2' },
    only: { type: 'string', value: 'NAMES', help: 'Comma-separated option sets to run.', default: 'all' },
    interleave: { type: 'boolean', help: 'Load the chosen option sets together and run them in turns.' },
    json: { type: 'string', value: 'FILE', help: 'Also write the results as JSON.' },
  },
} satisfies CommandSpec<Record<string, Flag>>;

async function main({ values }: CommandLine<typeof SPEC.flags>): Promise<number> {
  if (!values.model) throw new UsageError('--model DIR is required');
  const part = values.part ?? 'unet';
  if (part !== 'unet' && part !== 'vae_decoder') throw new UsageError(`--part must be unet or vae_decoder (got ${part})`);
  const { width, height } = usageErrorOf(() => parseBenchSize(values.size ?? '512x512'));
  const runs = usageErrorOf(() => parseCount('runs', values.runs ?? '2'));
  const machine: MachineInfo = describeMachine('cpu');
  const names = values.only?.split(',').map((name) => name.trim());
  const chosen = variants().filter((variant) => !names || names.includes(variant.name));
  const unknown = names?.filter((name) => !chosen.some((variant) => variant.name === name)) ?? [];
  if (unknown.length > 0) throw new UsageError(`--only: no option set named ${unknown.join(', ')} (known: ${variants().map((v) => v.name).join('; ')})`);

  const usable = chosen.filter((variant) => part === 'unet' || !variant.batch);
  const trial = (variants: Variant[]): SessionTrial => ({
    modelDir: resolve(values.model!),
    part,
    arms: variants.map((variant) => ({ options: variant.options, batch: variant.batch ?? 2, fuseAttention: !variant.unfusedAttention })),
    width,
    height,
    runs,
  });
  const rows: SweepRow[] = [];
  const record = (variants: Variant[], loadAverage: number, result: TrialResult) =>
    variants.forEach((variant, index) =>
      rows.push({ variant: variant.name, options: variant.options, batch: variant.batch ?? 2, loadAverage, ...result, ...result.arms[index] }),
    );
  if (values.interleave) {
    console.error(`${usable.map((variant) => variant.name).join(' | ')}, in turns…`);
    record(usable, describeMachine('cpu').loadAverage, await runInChild(trial(usable)));
  } else {
    for (const variant of usable) {
      console.error(`${variant.name}…`);
      record([variant], describeMachine('cpu').loadAverage, await runInChild(trial([variant])));
    }
  }

  const how = values.interleave ? 'loaded together and run in turns' : 'each in a fresh process';
  console.log(`${part} at ${width}x${height}, ${runs} runs per option set, ${how}`);
  console.log(`${machine.cpuModel}, ${machine.cores} cores, onnxruntime-node ${machine.onnxruntime}\n`);
  console.log(
    formatTable(
      ['options', 'load', 'first run', 'best run', 'median run', 'RSS after load', 'peak RSS', 'load avg'],
      rows.map((row) => [
        row.variant,
        formatDuration(row.loadMs),
        formatDuration(row.runMs[0]),
        formatDuration(min(row.runMs)),
        formatDuration(median(row.runMs)),
        formatBytes(row.rssAfterLoadBytes),
        formatBytes(row.peakRssBytes),
        row.loadAverage.toFixed(1),
      ]),
    ),
  );
  if (values.json) writeFileSync(values.json, JSON.stringify({ part, width, height, runs, interleaved: values.interleave ?? false, machine, rows }, null, 2) + '\n');
  return 0;
}

runCli(SPEC, main);
