// Time and peak memory of an upscale: a picture of --size pixels made --factor times larger by an ONNX upscaler
// (--model FILE, else Real-ESRGAN x4plus's architecture with random weights, the same work and memory), window by
// window. Prints the numbers; each window's time goes to stderr as it finishes.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli, UsageError, usageErrorOf, type CommandLine, type CommandSpec, type Flag } from '../cli/command-line.ts';
import { parseSize } from '../jobs/options.ts';
import { encodeModel } from '../graphs/onnx-graph.ts';
import { buildRrdbNet, REAL_ESRGAN_X4PLUS } from '../graphs/rrdbnet.ts';
import { RandomWeights } from '../graphs/weights.ts';
import { EXECUTION_PROVIDERS, type ExecutionProvider } from '../pipeline/onnx-model.ts';
import { DEFAULT_OVERLAP, DEFAULT_WINDOW, OnnxUpscaler, upscaleImage } from '../upscale/upscaler.ts';
import { describeMachine, peakRssBytes } from './machine.ts';
import { parseCount } from './options.ts';

const SPEC = {
  name: 'bench:upscale',
  command: 'npm run bench:upscale --',
  usage: '[options]',
  description: "Measures the time and peak memory of an upscale as the Upscale buttons make it: window by window.",
  flags: {
    model: { type: 'string', value: 'FILE', help: 'An upscaler .onnx.', default: "Real-ESRGAN x4plus's architecture with random weights" },
    size: { type: 'string', value: 'WxH', help: 'The picture to upscale.', default: '1024x1024' },
    factor: { type: 'string', value: 'N', help: 'How many times larger.', default: '4' },
    window: { type: 'string', value: 'PX', help: 'Window side for a model that takes any size.', default: String(DEFAULT_WINDOW) },
    overlap: { type: 'string', value: 'PX', help: 'Context each window reads beyond its core.', default: String(DEFAULT_OVERLAP) },
    blocks: {
      type: 'string',
      value: 'N',
      help: "RRDB blocks of the generated model: fewer keep every layer's width (a window's activations) and take less time, but less weight memory (2.9 MB of weights a block).",
      default: String(REAL_ESRGAN_X4PLUS.blocks),
    },
    ep: { type: 'string', value: 'EP', help: `Execution provider: ${EXECUTION_PROVIDERS.join(', ')}.`, default: 'cpu' },
  },
} satisfies CommandSpec<Record<string, Flag>>;

async function main({ values }: CommandLine<typeof SPEC.flags>): Promise<number> {
  const ep = values.ep ?? 'cpu';
  if (!(EXECUTION_PROVIDERS as readonly string[]).includes(ep)) throw new UsageError(`--ep must be one of ${EXECUTION_PROVIDERS.join(', ')} (got ${ep})`);
  const size = parseSize(values.size ?? '1024x1024');
  if (!size) throw new UsageError(`--size must look like 1024x1024 (got "${values.size}")`);
  const options = usageErrorOf(() => ({
    factor: parseCount('factor', values.factor ?? '4'),
    window: parseCount('window', values.window ?? String(DEFAULT_WINDOW)),
    overlap: parseCount('overlap', values.overlap ?? String(DEFAULT_OVERLAP), 0),
    blocks: parseCount('blocks', values.blocks ?? String(REAL_ESRGAN_X4PLUS.blocks)),
    executionProvider: ep as ExecutionProvider,
  }));
  const scratch = mkdtempSync(join(tmpdir(), 'bench-upscale-'));
  try {
    let path = values.model;
    if (!path) {
      path = join(scratch, 'rrdbnet-x4plus.onnx');
      writeFileSync(path, encodeModel(buildRrdbNet({ ...REAL_ESRGAN_X4PLUS, blocks: options.blocks }, { precision: 'fp32', attention: 'unfused', weights: new RandomWeights(1) })));
    }
    const rssBeforeLoad = process.memoryUsage().rss;
    const loadStarted = performance.now();
    const generated = options.blocks === REAL_ESRGAN_X4PLUS.blocks ? 'RRDBNet x4plus (random weights)' : `RRDBNet x4plus with ${options.blocks} of its ${REAL_ESRGAN_X4PLUS.blocks} blocks (random weights)`;
    const upscaler = await OnnxUpscaler.load(path, values.model ? path : generated, {
      executionProvider: options.executionProvider,
      clock: { runMs: 0 },
      fuseAttention: false,
    });
    const loadMs = performance.now() - loadStarted;
    const { width, height } = size;
    const pixels = Uint8Array.from({ length: width * height * 3 }, (_, i) => (i * 2654435761) >>> 24);
    const started = performance.now();
    let windows = 0;
    const { image } = await upscaleImage({ pixels, width, height }, options.factor, upscaler, {
      window: options.window,
      overlap: options.overlap,
      onTile: (done, total) => {
        windows = total;
        console.error(`window ${done}/${total}: ${((performance.now() - started) / 1000).toFixed(1)} s`);
      },
    });
    const runMs = performance.now() - started;
    await upscaler.release();
    const machine = describeMachine(options.executionProvider);
    console.log(
      [
        `upscaler: ${upscaler.name} (×${upscaler.scale})`,
        `${width}x${height} → ${image.width}x${image.height} (×${options.factor})`,
        `window ${options.window}, overlap ${options.overlap}: ${windows} windows in the last pass`,
        `load ${(loadMs / 1000).toFixed(1)} s, upscale ${(runMs / 1000).toFixed(1)} s`,
        `peak RSS ${(peakRssBytes() / 2 ** 30).toFixed(2)} GiB (${(rssBeforeLoad / 2 ** 30).toFixed(2)} GiB before the model loaded)`,
        `machine: ${machine.cpuModel}, ${machine.cores} cores, ${machine.executionProvider}, load average ${machine.loadAverage.toFixed(1)}`,
      ].join('\n'),
    );
    return 0;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

runCli(SPEC, main);
