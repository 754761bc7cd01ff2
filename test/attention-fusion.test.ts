import { readdirSync, readFileSync } from 'node:fs';
import onnxProto from 'onnx-proto';
import { describe, expect, it } from 'vitest';
import { fuseAttention } from '../src/pipeline/attention-fusion.ts';
import { attention } from '../src/graphs/layers.ts';
import { encodeModel, GraphBuilder, intAttr, type ModelProto, type Precision } from '../src/graphs/onnx-graph.ts';
import { RandomWeights } from '../src/graphs/weights.ts';
import { maxAbsDifference, randomTensor, runOnCpu } from './onnx-cpu.ts';

const { onnx } = onnxProto;
const torchExports = new URL('./fixtures/torch-attention/', import.meta.url);

/** Decodes, fuses, re-encodes: what OnnxModel.load does with a model on the CPU. */
function fuse(bytes: Uint8Array): { count: number; model: ModelProto; bytes: Uint8Array } {
  const model = onnx.ModelProto.decode(bytes);
  const count = fuseAttention(model);
  return { count, model, bytes: onnx.ModelProto.encode(model).finish() };
}

const opTypes = (model: ModelProto) => (model.graph?.node ?? []).map((node) => node.opType);

describe('attention fusion on the graphs torch exports for diffusers', () => {
  const files = readdirSync(torchExports).filter((file) => file.endsWith('.onnx'));

  it('has the four exports to check', () => {
    expect(files.sort()).toEqual([
      'attention-baddbmm-dynamo.onnx',
      'attention-baddbmm-torchscript.onnx',
      'attention-sdpa-dynamo.onnx',
      'attention-sdpa-torchscript.onnx',
    ]);
  });

  it.each(files)('%s: one MultiHeadAttention, outputs equal to the unfused graph at any batch and length', async (file) => {
    const original = readFileSync(new URL(file, torchExports));
    const fused = fuse(original);
    expect(fused.count).toBe(1);
    expect(opTypes(fused.model)).toContain('MultiHeadAttention');
    // The score path is gone: no Softmax, no baddbmm zero fill, and the only MatMuls left are the four projections.
    expect(opTypes(fused.model)).not.toContain('Softmax');
    expect(opTypes(fused.model)).not.toContain('ConstantOfShape');
    expect(opTypes(fused.model).filter((op) => op === 'MatMul')).toHaveLength(4);

    for (const [batch, tokens, contextTokens] of [[2, 16, 7], [1, 96, 77], [3, 5, 1]]) {
      const feeds = { x: randomTensor([batch, tokens, 64], tokens), context: randomTensor([batch, contextTokens, 32], contextTokens) };
      const expected = await runOnCpu(original, feeds);
      const actual = await runOnCpu(fused.bytes, feeds);
      expect(actual).toHaveLength(batch * tokens * 64);
      expect(maxAbsDifference(actual, expected)).toBeLessThan(1e-5);
    }
  });
});

/** Self-attention of x [1, tokens, 16] over two heads, as the tiny and benchmark models build it. */
function builtAttention(precision: Precision, options: { causalMask?: boolean } = {}): ModelProto {
  const g = new GraphBuilder({ precision, attention: 'unfused', weights: new RandomWeights(3) });
  let additiveMask: string | undefined;
  if (options.causalMask) {
    const mask = Array.from({ length: 64 }, (_, i) => (i % 8 > Math.floor(i / 8) ? -1e4 : 0));
    additiveMask = g.floatConstant('mask', [8, 8], mask);
  }
  const projections = { query: 'q_proj', key: 'k_proj', value: 'v_proj', out: 'out_proj' };
  const out = attention(g, 'x', 'x', 'attn', { channels: 16, contextChannels: 16, heads: 2, projections, projectionBias: true, additiveMask });
  g.op('Identity', [out], [], 'out');
  const type = g.floatType;
  return g.toModel('attention', [{ name: 'x', type, shape: [1, 8, 16] }], [{ name: 'out', type, shape: [1, 8, 16] }]);
}

describe('attention fusion on built graphs', () => {
  it('fuses the 4-D attention with its scale after the scores, as the tiny and benchmark models have it', async () => {
    const model = builtAttention('fp32');
    const original = encodeModel(model);
    const fused = fuse(original);
    expect(fused.count).toBe(1);
    const feeds = { x: randomTensor([1, 8, 16], 5) };
    expect(maxAbsDifference(await runOnCpu(fused.bytes, feeds), await runOnCpu(original, feeds))).toBeLessThan(1e-6);
  });

  it('leaves masked attention alone (CLIP is causal)', () => {
    const fused = fuse(encodeModel(builtAttention('fp32', { causalMask: true })));
    expect(fused.count).toBe(0);
    expect(opTypes(fused.model)).toContain('Softmax');
  });

  it('leaves fp16 graphs alone: onnxruntime has no CPU MultiHeadAttention for them', () => {
    expect(fuse(encodeModel(builtAttention('fp16'))).count).toBe(0);
  });

  function bareAttention(probabilitiesAreOutput: boolean): ModelProto {
    const g = new GraphBuilder({ precision: 'fp32', attention: 'unfused' });
    const scores = g.op('Div', [g.op('MatMul', ['q', 'k_t']), g.scalar('divisor', 4)]);
    const probabilities = g.op('Softmax', [scores], [intAttr('axis', -1)], 'probabilities');
    g.op('MatMul', [probabilities, 'v'], [], 'out');
    const spec = (name: string, shape: number[]) => ({ name, type: 'float32' as const, shape });
    return g.toModel(
      'bare',
      [spec('q', [6, 10, 4]), spec('k_t', [6, 4, 12]), spec('v', [6, 12, 4])],
      [spec('out', [6, 10, 4]), ...(probabilitiesAreOutput ? [spec('probabilities', [6, 10, 12])] : [])],
    );
  }

  it('fuses 3-D attention over graph inputs, with a divided scale', async () => {
    const original = encodeModel(bareAttention(false));
    const fused = fuse(original);
    expect(fused.count).toBe(1);
    const feeds = { q: randomTensor([6, 10, 4], 1), k_t: randomTensor([6, 4, 12], 2), v: randomTensor([6, 12, 4], 3) };
    expect(maxAbsDifference(await runOnCpu(fused.bytes, feeds), await runOnCpu(original, feeds))).toBeLessThan(1e-6);
  });

  it('keeps the scores when the graph also returns them', () => {
    expect(fuse(encodeModel(bareAttention(true))).count).toBe(0);
  });
});
