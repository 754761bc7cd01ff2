import { basename } from 'node:path';
import type { GpuFusions } from '../pipeline/gpu-fusion.ts';
import { formatBytes, formatDuration, formatTable } from './format.ts';
import type { ImageBenchResult, ImageRun } from './image-bench.ts';
import { max, median, min } from './stats.ts';

const percent = (share: number) => `${(share * 100).toFixed(2)} %`;

/** Best and median over runs; `higherIsBetter` picks the best end. */
function row(label: string, values: number[], format: (value: number) => string, higherIsBetter = false): string[] {
  return [label, format(higherIsBetter ? max(values) : min(values)), format(median(values))];
}

/** The VAE's row; with decoders in turns, one row for each and their ratio (each tiny run against the full run before it). */
function vaeRows({ options, runs }: ImageBenchResult): string[][] {
  const label = options.strength === undefined ? 'VAE decode' : 'VAE encode + decode';
  if (options.decoder !== 'alternate') return [row(`${label}${options.decoder === 'tiny' ? ' (tiny decoder)' : ''}`, runs.map((run) => run.vaeMs), formatDuration)];
  const full = runs.filter((run) => run.decoder === 'full').map((run) => run.vaeMs);
  const tiny = runs.filter((run) => run.decoder === 'tiny').map((run) => run.vaeMs);
  const ratios = tiny.map((ms, index) => ms / full[index]);
  return [
    row(label, full, formatDuration),
    row(`${label} (tiny decoder)`, tiny, formatDuration),
    row('tiny decoder ÷ full, run by run', ratios, percent),
  ];
}

export function formatReport(result: ImageBenchResult): string {
  const { options, machine, runs } = result;
  const of = (pick: (run: ImageRun) => number) => runs.map(pick);
  const calls = runs[0].unetStepMs.length;
  // PNDM and Heun call the U-Net more often than the steps asked for; the per-step rows are per call.
  const steps = calls === options.steps ? `${calls} steps` : `${options.steps} steps (${calls} U-Net calls)`;
  const rows = [
    ['model load', formatDuration(result.loadMs), ''],
    row('tokenize', of((run) => run.tokenizeMs), formatDuration),
    row('text encoder', of((run) => run.textEncoderMs), formatDuration),
    row('U-Net per step', runs.flatMap((run) => run.unetStepMs), formatDuration),
    row('scheduler + own code per step', of((run) => run.ownStepMs), formatDuration),
    ...vaeRows(result),
    ...(options.previewEverySteps || options.stepsVideo
      ? [
          row('previews per image', of((run) => run.previews), String, true),
          row('of them by the tiny decoder', of((run) => run.tinyDecoderPreviews), String, true),
          row('previews (decode + JPEG), share of image', of((run) => run.previewMs / run.totalMs), percent),
        ]
      : []),
    ...(options.stepsVideo
      ? [
          row('steps animation encode', of((run) => run.animationMs!), formatDuration),
          row('steps animation size', of((run) => run.animationBytes!), (bytes) => `${Math.round(bytes / 1024)} KiB`),
          row('previews + animation, share of image', of((run) => (run.previewMs + run.animationMs!) / (run.totalMs + run.animationMs!)), percent),
        ]
      : []),
    row('PNG encode', of((run) => run.pngMs), formatDuration),
    row('total per image', of((run) => run.totalMs), formatDuration),
    row('it/s', of((run) => run.iterationsPerSecond), (value) => value.toFixed(3), true),
    row('overhead ratio (wall / session.run)', of((run) => run.overheadRatio), (value) => value.toFixed(4)),
    ['peak RSS', formatBytes(result.peakRssBytes), `${result.peakRssRatio.toFixed(2)} × model files`],
  ];
  const memory = `${(machine.memoryBytes / 2 ** 30).toFixed(1)} GiB`;
  const { unet, vae } = result.fusedAttentions;
  const attention = result.builtFused ? 'attention fused when built' : unet + vae > 0 ? `attention fused at load (U-Net ${unet}, VAE ${vae})` : 'attention unfused';
  const gpu = result.gpuFusions.unet ?? result.gpuFusions.vae ? `, GPU fusion at load (${describeGpuFusions(result.gpuFusions)})` : '';
  const img2img = options.strength === undefined ? '' : `img2img at strength ${options.strength}, `;
  return [
    `${result.model.name} (${formatBytes(result.model.fileBytes)}), ${img2img}${options.width}x${options.height}, ${steps} of ${runs[0].scheduler}, ` +
      `guidance ${options.guidance}${options.fp16AsIs ? ', fp16 graphs as they are' : ''}${options.tinyVaeDir ? `, tiny decoder ${basename(options.tinyVaeDir)}` : ''}${options.stepsVideo ? ', steps animation' : ''}, ${runs.length} run${runs.length === 1 ? '' : 's'}, EP ${machine.executionProvider}, ${attention}${gpu}, VAE decoder layout ${result.decoderLayout}${options.staticShape ? ', static shapes' : ''}`,
    `${machine.cpuModel}, ${machine.cores} cores, ${memory}, ${machine.os}, Node ${machine.node}, onnxruntime-node ${machine.onnxruntime}, ` +
      `load average ${machine.loadAverage.toFixed(1)} at start`,
    '',
    formatTable(['', 'best', 'median'], rows),
  ].join('\n');
}

/** "U-Net: 16 MultiHeadAttention, 32 SkipLayerNormalization, …; VAE: …", the operators each model got. */
function describeGpuFusions(fusions: ImageBenchResult['gpuFusions']): string {
  const names: Record<keyof GpuFusions, string> = {
    multiHeadAttention: 'MultiHeadAttention',
    skipLayerNormalization: 'SkipLayerNormalization',
    biasSplitGelu: 'BiasSplitGelu',
    groupNorm: 'GroupNorm',
  };
  const parts = (Object.entries({ 'U-Net': fusions.unet, VAE: fusions.vae }) as [string, GpuFusions | undefined][])
    .filter(([, counts]) => counts !== undefined)
    .map(([model, counts]) => `${model}: ${(Object.keys(names) as (keyof GpuFusions)[]).map((key) => `${counts![key]} ${names[key]}`).join(', ')}`);
  return parts.join('; ');
}
