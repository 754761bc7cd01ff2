import { resolve } from 'node:path';
import { runCli, UsageError, type CommandLine, type CommandSpec, type Flag } from '../cli/command-line.ts';
import { type ExternalDataName, writeTinyModel } from './index.ts';

const EXTERNAL_DATA_NAMES: readonly ExternalDataName[] = ['weights.pb', 'model.onnx_data', 'model.onnx.data'];

const SPEC = {
  name: 'model:tiny',
  command: 'npm run model:tiny --',
  usage: '[options]',
  description: "Writes the project's tiny test model: the diffusers ONNX layout with random weights, which draws noise.",
  flags: {
    out: { type: 'string', value: 'DIR', help: 'Where to write it.', default: 'models/tiny' },
    fp16: { type: 'boolean', help: 'Float16 weights, inputs and outputs, as in fp16 exports.' },
    'external-data': { type: 'string', value: 'FILE', help: `Keep the U-Net's weights beside its graph, in ${EXTERNAL_DATA_NAMES.join(', ')}.`, default: 'inline' },
    seed: { type: 'string', value: 'N', help: 'Seed of the random weights.', default: 'a fixed one' },
  },
} satisfies CommandSpec<Record<string, Flag>>;

async function main({ values }: CommandLine<typeof SPEC.flags>): Promise<number> {
  const externalData = values['external-data'];
  if (externalData !== undefined && !(EXTERNAL_DATA_NAMES as readonly string[]).includes(externalData)) {
    throw new UsageError(`--external-data must be one of ${EXTERNAL_DATA_NAMES.join(', ')} (got "${externalData}")`);
  }
  const seed = values.seed === undefined ? undefined : Number(values.seed);
  if (seed !== undefined && !Number.isInteger(seed)) throw new UsageError(`--seed must be a whole number (got "${values.seed}")`);
  const dir = resolve(values.out ?? 'models/tiny');
  await writeTinyModel(dir, { precision: values.fp16 ? 'fp16' : 'fp32', unetExternalData: externalData as ExternalDataName | undefined, seed });
  process.stdout.write(`Wrote the tiny test model to ${dir}\n`);
  return 0;
}

runCli(SPEC, main);
