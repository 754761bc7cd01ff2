import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { EXECUTION_PROVIDERS, type ExecutionProvider } from '../pipeline/onnx-model.ts';
import { parseCount, parseSize } from './options.ts';
import { formatQueueReport, runQueueBench } from './queue-bench.ts';

const usage = `usage: npm run bench:queue -- [--model DIR] [--jobs 8] [--users 3] [--size 256x256] [--steps 4]
                           [--probe-every 250] [--ep ${EXECUTION_PROVIDERS.join('|')}] [--json FILE]
Without --model it uses the generated tiny model.`;

function parseOptions() {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      jobs: { type: 'string', default: '8' },
      users: { type: 'string', default: '3' },
      size: { type: 'string' },
      steps: { type: 'string', default: '4' },
      'probe-every': { type: 'string', default: '250' },
      ep: { type: 'string', default: 'cpu' },
      json: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) return undefined;
  if (!(EXECUTION_PROVIDERS as readonly string[]).includes(values.ep)) {
    throw new Error(`--ep must be one of ${EXECUTION_PROVIDERS.join(', ')} (got ${values.ep})`);
  }
  return {
    modelDir: values.model,
    jobs: parseCount('jobs', values.jobs),
    users: parseCount('users', values.users),
    size: values.size === undefined ? undefined : parseSize(values.size),
    steps: parseCount('steps', values.steps),
    probeEveryMs: parseCount('probe-every', values['probe-every']),
    executionProvider: values.ep as ExecutionProvider,
    json: values.json,
  };
}

async function main(): Promise<void> {
  const options = parseOptions();
  if (!options) {
    console.log(usage);
    return;
  }
  const result = await runQueueBench(options, (line) => console.error(line));
  console.log(formatQueueReport(result));
  if (options.json) writeFileSync(options.json, JSON.stringify(result, null, 2) + '\n');
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  console.error(usage);
  process.exitCode = 1;
});
