import { cpSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFloat32Graph } from '../src/pipeline/float32-graph.ts';
import { StableDiffusionPipeline } from '../src/pipeline/pipeline.ts';
import type { GenerateRequest } from '../src/pipeline/types.ts';
import { writeTinyModel } from '../src/tiny-model/index.ts';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'float32-graph-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function draw(dir: string, request: GenerateRequest) {
  const pipeline = await StableDiffusionPipeline.fromPretrained(dir, { float32OnCpu: false });
  try {
    return { info: pipeline.info, image: (await pipeline.generate(request)).image.pixels };
  } finally {
    await pipeline.release();
  }
}

function meanDifference(a: Uint8Array, b: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i] - b[i]);
  return sum / a.length;
}

describe('writeFloat32Graph', () => {
  it('turns an fp16 model into one that computes in float32: the fp32 model’s image, closer than the fp16 one', async () => {
    const fp32 = join(root, 'fp32');
    const fp16 = join(root, 'fp16');
    await writeTinyModel(fp32);
    await writeTinyModel(fp16, { precision: 'fp16', unetExternalData: 'weights.pb', timestepType: 'float16' });
    const widened = join(root, 'widened');
    cpSync(fp16, widened, { recursive: true });
    for (const component of ['text_encoder', 'unet', 'vae_decoder']) {
      await rm(join(widened, component), { recursive: true });
      await writeFloat32Graph(join(fp16, component, 'model.onnx'), join(widened, component));
    }
    expect(readdirSync(join(widened, 'unet')).sort()).toEqual(['model.onnx', 'model.onnx_data']);

    const session = await ort.InferenceSession.create(join(widened, 'unet', 'model.onnx'));
    expect(session.inputMetadata.map((input) => [input.name, input.isTensor && input.type])).toEqual([
      ['sample', 'float32'],
      ['timestep', 'float32'],
      ['encoder_hidden_states', 'float32'],
    ]);
    await session.release();

    const request = { prompt: 'a red fox', seed: 9, steps: 4, guidanceScale: 7.5, width: 64, height: 64 };
    const reference = await draw(fp32, request);
    const half = await draw(fp16, request);
    const full = await draw(widened, request);
    // The fp16 model's weights are the fp32 model's rounded: widened, they compute what the fp32 model computes, to their rounding.
    expect(meanDifference(full.image, reference.image)).toBeLessThan(1);
    expect(meanDifference(full.image, reference.image)).toBeLessThan(meanDifference(half.image, reference.image));
  });
});
