import { writeFileSync } from 'node:fs';
import { runCli, UsageError, usageErrorOf, type CommandLine, type CommandSpec, type Flag } from '../cli/command-line.ts';
import { EXECUTION_PROVIDERS, type ExecutionProvider } from '../pipeline/onnx-model.ts';
import { DECODERS, type Decoder } from '../pipeline/types.ts';
import { runImageBench } from './image-bench.ts';
import { parseBenchSize, parseCount } from './options.ts';
import { formatReport } from './report.ts';

const SPEC = {
  name: 'bench',
  command: 'npm run bench --',
  usage: '--model DIR [options]',
  description: 'Generates images and prints where the time and memory go: load, each stage, each U-Net step, peak RSS.',
  flags: {
    model: { type: 'string', value: 'DIR', help: 'The model to measure (required; npm run model:bench-build writes models/sd15-bench).' },
    size: { type: 'string', value: 'WxH', help: 'Image size, in multiples of 8.', default: '512x512' },
    steps: { type: 'string', value: 'N', help: 'Denoising steps.', default: '20' },
    scheduler: { type: 'string', value: 'NAME', help: 'A scheduler name or diffusers class.', default: "the model's own" },
    guidance: { type: 'string', value: 'X', help: 'Guidance scale.', default: '7.5' },
    runs: { type: 'string', value: 'N', help: 'Images to generate.', default: '3' },
    strength: { type: 'string', value: 'X', help: 'img2img: redraw a generated picture of the size at this strength (0 < X <= 1).' },
    ep: { type: 'string', value: 'EP', help: `Execution provider: ${EXECUTION_PROVIDERS.join(', ')}.`, default: 'cpu' },
    'unfused-attention': { type: 'boolean', help: "Run attention as exported, not fused (to compare)." },
    'gpu-fusion': { type: 'boolean', help: "With --ep cuda or webgpu: rewrite the graphs into the provider's fused operators at load." },
    'static-shape': { type: 'boolean', help: "Fix the U-Net's and VAE's input shapes to --size (and the batch guidance implies)." },
    prompt: { type: 'string', value: 'TEXT', help: 'The prompt.', default: 'an astronaut riding a horse' },
    seed: { type: 'string', value: 'N', help: 'Seed of the first image.', default: '42' },
    'fp16-as-is': { type: 'boolean', help: 'On the CPU, run an fp16 model as it is, not as its float32 copy (to compare).' },
    'tiny-vae': { type: 'string', value: 'DIR', help: 'A tiny decoder (TAESD) to load beside the model: previews use it (npm run model:bench-build -- --taesd writes one).' },
    decoder: { type: 'string', value: 'full|tiny|alternate', help: 'What decodes the image: the model\'s VAE, the tiny decoder, or the two in turns (to compare them).', default: 'full' },
    previews: { type: 'string', value: 'N', help: 'Previews after every N steps, as the bot makes them (3 % budget, JPEG).', default: 'none' },
    'steps-video': { type: 'boolean', help: 'Make each image\'s steps animation as the bot does, from previews of every step (their cost and its encoding are reported).' },
    json: { type: 'string', value: 'FILE', help: 'Also write the results, with the machine, as JSON.' },
  },
} satisfies CommandSpec<Record<string, Flag>>;

const DEFAULT_PROMPT = 'a photo of an astronaut riding a horse on the moon, highly detailed';

function parseOptions(values: CommandLine<typeof SPEC.flags>['values']) {
  if (!values.model) throw new UsageError('--model DIR is required (npm run model:bench-build writes models/sd15-bench)');
  const ep = values.ep ?? 'cpu';
  if (!(EXECUTION_PROVIDERS as readonly string[]).includes(ep)) throw new UsageError(`--ep must be one of ${EXECUTION_PROVIDERS.join(', ')} (got ${ep})`);
  const guidance = Number(values.guidance ?? '7.5');
  const decoder = values.decoder ?? 'full';
  const decoders: readonly string[] = [...DECODERS, 'alternate'];
  if (!decoders.includes(decoder)) throw new UsageError(`--decoder must be one of ${decoders.join(', ')} (got ${decoder})`);
  if (decoder !== 'full' && !values['tiny-vae']) throw new UsageError(`--decoder ${decoder} needs --tiny-vae DIR`);
  if (!Number.isFinite(guidance) || guidance < 0) throw new UsageError(`--guidance must be a number of at least 0 (got ${values.guidance})`);
  const strength = values.strength === undefined ? undefined : Number(values.strength);
  if (strength !== undefined && !(strength > 0 && strength <= 1)) throw new UsageError(`--strength must be more than 0 and at most 1 (got ${values.strength})`);
  return usageErrorOf(() => ({
    bench: {
      modelDir: values.model!,
      ...parseBenchSize(values.size ?? '512x512'),
      steps: parseCount('steps', values.steps ?? '20'),
      scheduler: values.scheduler,
      guidance,
      runs: parseCount('runs', values.runs ?? '3'),
      executionProvider: ep as ExecutionProvider,
      fuseAttention: !values['unfused-attention'],
      gpuFusion: values['gpu-fusion'] ?? false,
      staticShape: values['static-shape'] ?? false,
      prompt: values.prompt ?? DEFAULT_PROMPT,
      seed: values.seed ?? '42',
      tinyVaeDir: values['tiny-vae'],
      fp16AsIs: values['fp16-as-is'] ?? false,
      decoder: decoder as Decoder | 'alternate',
      previewEverySteps: values.previews === undefined ? undefined : parseCount('previews', values.previews),
      stepsVideo: values['steps-video'] ?? false,
      ...(strength === undefined ? {} : { strength }),
    },
    json: values.json,
  }));
}

async function main({ values }: CommandLine<typeof SPEC.flags>): Promise<number> {
  const parsed = parseOptions(values);
  const result = await runImageBench(parsed.bench, (line) => console.error(line));
  console.log(formatReport(result));
  if (parsed.json) writeFileSync(parsed.json, JSON.stringify(result, null, 2) + '\n');
  return 0;
}

runCli(SPEC, main);
