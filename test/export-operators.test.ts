import onnxProto from 'onnx-proto';
import ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { GPU_ONLY_OPERATORS } from '../src/pipeline/export-operators.ts';

const { onnx } = onnxProto;
const FLOAT = onnx.TensorProto.DataType.FLOAT;

/** Inputs (shapes) and attributes that make a well-formed node of each operator, as exports use them. */
const NODES: Record<string, { inputs: number[][]; attributes?: object[] }> = {
  GroupNorm: { inputs: [[1, 4, 4, 8], [8], [8]], attributes: groupNormAttributes() },
  SkipGroupNorm: { inputs: [[1, 4, 4, 8], [8], [8], [1, 4, 4, 8]], attributes: groupNormAttributes() },
  BiasSplitGelu: { inputs: [[1, 4, 8], [8]] },
  BiasAdd: { inputs: [[1, 4, 8], [8], [1, 4, 8]] },
  NhwcConv: { inputs: [[1, 4, 4, 8], [8, 1, 1, 8]] },
  NhwcFusedConv: { inputs: [[1, 4, 4, 8], [8, 1, 1, 8]] },
};

function groupNormAttributes(): object[] {
  return [
    { name: 'epsilon', type: onnx.AttributeProto.AttributeType.FLOAT, f: 1e-5 },
    { name: 'groups', type: onnx.AttributeProto.AttributeType.INT, i: 2 },
    { name: 'activation', type: onnx.AttributeProto.AttributeType.INT, i: 0 },
  ];
}

function oneNodeModel(opType: string): Uint8Array {
  const { inputs, attributes = [] } = NODES[opType];
  const valueInfo = (name: string, dims: number[]) => ({ name, type: { tensorType: { elemType: FLOAT, shape: { dim: dims.map((dimValue) => ({ dimValue })) } } } });
  const names = inputs.map((_, index) => `x${index}`);
  const graph = {
    name: opType,
    node: [{ opType, domain: 'com.microsoft', input: names, output: ['y'], attribute: attributes }],
    input: inputs.map((dims, index) => valueInfo(names[index], dims)),
    output: [{ name: 'y', type: { tensorType: { elemType: FLOAT } } }],
  };
  return onnx.ModelProto.encode({ irVersion: 8, opsetImport: [{ domain: '', version: 17 }, { domain: 'com.microsoft', version: 1 }], graph }).finish();
}

describe('operators of GPU-optimized exports', () => {
  it.each(Object.keys(GPU_ONLY_OPERATORS))('%s has no kernel in the onnxruntime-node this project installs (CPU)', async (opType) => {
    expect(NODES[opType]).toBeDefined();
    await expect(ort.InferenceSession.create(oneNodeModel(opType), { executionProviders: ['cpu'] })).rejects.toThrow(/implementation|kernel/i);
  });
});
