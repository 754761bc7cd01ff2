import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { EXECUTION_PROVIDERS, type ExecutionProvider } from '../pipeline/onnx-model.ts';
import { runImageBench } from './image-bench.ts';
import { parseCount, parseSize } from './options.ts';
import { formatReport } from './report.ts';

const usage = `usage: npm run bench -- --model DIR [--size 512x512] [--steps 20] [--scheduler NAME] [--guidance 7.5]
                     [--runs 3] [--ep ${EXECUTION_PROVIDERS.join('|')}] [--unfused-attention] [--prompt TEXT] [--seed N]
                     [--json FILE]`;

class UsageError extends Error {}

function parseOptions() {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      size: { type: 'string', default: '512x512' },
      steps: { type: 'string', default: '20' },
      scheduler: { type: 'string' },
      guidance: { type: 'string', default: '7.5' },
      runs: { type: 'string', default: '3' },
      ep: { type: 'string', default: 'cpu' },
      'unfused-attention': { type: 'boolean', default: false },
      prompt: { type: 'string', default: 'a photo of an astronaut riding a horse on the moon, highly detailed' },
      seed: { type: 'string', default: '42' },
      json: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) return undefined;
  if (!values.model) throw new UsageError('--model DIR is required (npm run model:bench-build writes models/sd15-bench)');
  if (!(EXECUTION_PROVIDERS as readonly string[]).includes(values.ep)) {
    throw new UsageError(`--ep must be one of ${EXECUTION_PROVIDERS.join(', ')} (got ${values.ep})`);
  }
  const guidance = Number(values.guidance);
  if (!Number.isFinite(guidance) || guidance < 0) throw new UsageError(`--guidance must be a number of at least 0 (got ${values.guidance})`);
  try {
    return {
      bench: {
        modelDir: values.model,
        ...parseSize(values.size),
        steps: parseCount('steps', values.steps),
        scheduler: values.scheduler,
        guidance,
        runs: parseCount('runs', values.runs),
        executionProvider: values.ep as ExecutionProvider,
        fuseAttention: !values['unfused-attention'],
        prompt: values.prompt,
        seed: values.seed,
      },
      json: values.json,
    };
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

async function main(): Promise<void> {
  const parsed = parseOptions();
  if (!parsed) {
    console.log(usage);
    return;
  }
  const result = await runImageBench(parsed.bench, (line) => console.error(line));
  console.log(formatReport(result));
  if (parsed.json) writeFileSync(parsed.json, JSON.stringify(result, null, 2) + '\n');
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  if (error instanceof UsageError) console.error(usage);
  process.exitCode = error instanceof UsageError ? 2 : 1;
});
