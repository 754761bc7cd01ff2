import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { type ExternalDataName, writeTinyModel } from './index.ts';

const usage = 'usage: npm run model:tiny -- [--out DIR] [--fp16] [--external-data weights.pb|model.onnx_data|model.onnx.data] [--seed N]';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: 'string', default: 'models/tiny' },
      fp16: { type: 'boolean', default: false },
      'external-data': { type: 'string' },
      seed: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(usage);
    return;
  }
  const dir = resolve(values.out);
  await writeTinyModel(dir, {
    precision: values.fp16 ? 'fp16' : 'fp32',
    unetExternalData: values['external-data'] as ExternalDataName | undefined,
    seed: values.seed === undefined ? undefined : Number(values.seed),
  });
  console.log(`Wrote the tiny test model to ${dir}`);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  console.error(usage);
  process.exitCode = 1;
});
