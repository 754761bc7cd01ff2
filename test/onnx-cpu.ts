import ort from 'onnxruntime-node';
import { expect } from 'vitest';
import { mulberry32 } from '../src/graphs/weights.ts';

/** A float32 tensor of seeded uniform values in [-1, 1). */
export function randomTensor(dims: number[], seed: number): ort.Tensor {
  const random = mulberry32(seed);
  const values = Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => 2 * random() - 1);
  return new ort.Tensor('float32', values, dims);
}

/** Runs a graph once in onnxruntime's CPU provider; its first output. */
export async function runOnCpu(model: Uint8Array, feeds: Record<string, ort.Tensor>): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(model, { executionProviders: ['cpu'], graphOptimizationLevel: 'all' });
  try {
    const outputs = await session.run(feeds);
    return outputs[session.outputNames[0]].data as Float32Array;
  } finally {
    await session.release();
  }
}

export function maxAbsDifference(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}
