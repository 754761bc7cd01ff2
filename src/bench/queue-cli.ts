import { writeFileSync } from 'node:fs';
import { runCli, UsageError, usageErrorOf, type CommandLine, type CommandSpec, type Flag } from '../cli/command-line.ts';
import { EXECUTION_PROVIDERS, type ExecutionProvider } from '../pipeline/onnx-model.ts';
import { parseBenchSize, parseCount } from './options.ts';
import { formatQueueReport, runQueueBench } from './queue-bench.ts';

const SPEC = {
  name: 'bench:queue',
  command: 'npm run bench:queue --',
  usage: '[options]',
  description: "Measures the bot's event-loop lag, acknowledgement time and previews' delay while the real queue and pipeline thread generate.",
  flags: {
    model: { type: 'string', value: 'DIR', help: 'The model to generate with.', default: 'the generated tiny model' },
    jobs: { type: 'string', value: 'N', help: 'Jobs to queue.', default: '8' },
    users: { type: 'string', value: 'N', help: 'Users they come from.', default: '3' },
    size: { type: 'string', value: 'WxH', help: 'Image size, in multiples of 8.', default: "the model's native size" },
    steps: { type: 'string', value: 'N', help: 'Denoising steps per image.', default: '4' },
    'probe-every': { type: 'string', value: 'MS', help: 'How often a simulated command arrives, in milliseconds.', default: '250' },
    'progress-interval': { type: 'string', value: 'MS', help: "The bot's PROGRESS_EDIT_INTERVAL_MS: previews come no faster.", default: '2000' },
    'tiny-vae': { type: 'string', value: 'DIR', help: 'A tiny decoder (TAESD) to make previews with.', default: 'none: linear previews' },
    ep: { type: 'string', value: 'EP', help: `Execution provider: ${EXECUTION_PROVIDERS.join(', ')}.`, default: 'cpu' },
    json: { type: 'string', value: 'FILE', help: 'Also write the results as JSON.' },
  },
} satisfies CommandSpec<Record<string, Flag>>;

async function main({ values }: CommandLine<typeof SPEC.flags>): Promise<number> {
  const ep = values.ep ?? 'cpu';
  if (!(EXECUTION_PROVIDERS as readonly string[]).includes(ep)) throw new UsageError(`--ep must be one of ${EXECUTION_PROVIDERS.join(', ')} (got ${ep})`);
  const options = usageErrorOf(() => ({
    modelDir: values.model,
    jobs: parseCount('jobs', values.jobs ?? '8'),
    users: parseCount('users', values.users ?? '3'),
    size: values.size === undefined ? undefined : parseBenchSize(values.size),
    steps: parseCount('steps', values.steps ?? '4'),
    probeEveryMs: parseCount('probe-every', values['probe-every'] ?? '250'),
    progressIntervalMs: parseCount('progress-interval', values['progress-interval'] ?? '2000', 0),
    tinyVaeDir: values['tiny-vae'],
    executionProvider: ep as ExecutionProvider,
  }));
  const result = await runQueueBench(options, (line) => console.error(line));
  console.log(formatQueueReport(result));
  if (values.json) writeFileSync(values.json, JSON.stringify(result, null, 2) + '\n');
  return 0;
}

runCli(SPEC, main);
