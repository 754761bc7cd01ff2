import onnxProto from 'onnx-proto';
import type { onnx as OnnxTypes } from 'onnx-proto';
import { float32ToFloat16 } from '../pipeline/float16.ts';

// onnx-proto is CommonJS (module.exports = root), so its namespace is reached through the default export.
const { onnx } = onnxProto;
type AttributeProto = OnnxTypes.IAttributeProto;
type NodeProto = OnnxTypes.INodeProto;
type TensorProto = OnnxTypes.ITensorProto;
type ValueInfoProto = OnnxTypes.IValueInfoProto;
export type ModelProto = OnnxTypes.IModelProto;

export type Precision = 'fp32' | 'fp16';
export type ElementType = 'float32' | 'float16' | 'int32' | 'int64';
export type Dim = number | string;

export interface ValueSpec {
  name: string;
  type: ElementType;
  shape: Dim[];
}

const OPSET = 17;
const IR_VERSION = 8;
/** Like onnx.save_model(save_as_external_data=True): tensors smaller than this stay inline. */
const EXTERNAL_DATA_THRESHOLD_BYTES = 1024;

const dataTypes: Record<ElementType, number> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  float16: onnx.TensorProto.DataType.FLOAT16,
  int32: onnx.TensorProto.DataType.INT32,
  int64: onnx.TensorProto.DataType.INT64,
};

export function intAttr(name: string, value: number): AttributeProto {
  return { name, type: onnx.AttributeProto.AttributeType.INT, i: value };
}

export function intsAttr(name: string, values: number[]): AttributeProto {
  return { name, type: onnx.AttributeProto.AttributeType.INTS, ints: values };
}

export function floatAttr(name: string, value: number): AttributeProto {
  return { name, type: onnx.AttributeProto.AttributeType.FLOAT, f: value };
}

export function stringAttr(name: string, value: string): AttributeProto {
  return { name, type: onnx.AttributeProto.AttributeType.STRING, s: new TextEncoder().encode(value) };
}

/**
 * Collects nodes and initializers of one graph. Float weights are drawn in fp32 from the seeded generator in
 * the same order whatever the precision, and stored in the model's float type, so an fp16 model holds exactly
 * the fp32 model's weights rounded.
 */
export class GraphBuilder {
  private readonly nodes: NodeProto[] = [];
  private readonly initializers: TensorProto[] = [];
  private readonly usedNames = new Set<string>();

  constructor(
    readonly precision: Precision,
    private readonly random: () => number,
  ) {}

  get floatType(): ElementType {
    return this.precision === 'fp16' ? 'float16' : 'float32';
  }

  /** Adds a node with one output (named `output` when given) and returns that output's name. */
  op(opType: string, inputs: string[], attributes: AttributeProto[] = [], output?: string): string {
    const name = this.uniqueName(output ?? opType);
    this.nodes.push({ opType, name: `${opType}_${name}`, input: inputs, output: [name], attribute: attributes });
    return name;
  }

  cast(x: string, type: ElementType): string {
    return this.op('Cast', [x], [intAttr('to', dataTypes[type])]);
  }

  /** A trainable-looking tensor: `center` plus uniform noise in [-bound, bound]. */
  parameter(name: string, dims: number[], bound: number, center = 0): string {
    const values = new Float32Array(dims.reduce((a, b) => a * b, 1));
    for (let i = 0; i < values.length; i++) values[i] = center + (2 * this.random() - 1) * bound;
    return this.floatConstant(name, dims, values);
  }

  /** A float tensor in the model's float type. */
  floatConstant(name: string, dims: number[], values: Float32Array | number[], type = this.floatType): string {
    const data = values instanceof Float32Array ? values : Float32Array.from(values);
    const raw = type === 'float16' ? float32ToFloat16(data) : data;
    return this.addInitializer(name, type, dims, new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength));
  }

  /** A model-float scalar (shape []), e.g. an attention scale. */
  scalar(name: string, value: number): string {
    return this.floatConstant(name, [], [value]);
  }

  int64Constant(name: string, values: number[], dims: number[] = [values.length]): string {
    const data = BigInt64Array.from(values, (value) => BigInt(value));
    return this.addInitializer(name, 'int64', dims, new Uint8Array(data.buffer));
  }

  toModel(graphName: string, inputs: ValueSpec[], outputs: ValueSpec[]): ModelProto {
    return {
      irVersion: IR_VERSION,
      opsetImport: [{ domain: '', version: OPSET }],
      producerName: 'imagine-bot tiny-model',
      graph: {
        name: graphName,
        node: this.nodes,
        initializer: this.initializers,
        input: inputs.map(valueInfo),
        output: outputs.map(valueInfo),
      },
    };
  }

  private addInitializer(name: string, type: ElementType, dims: number[], rawData: Uint8Array): string {
    const unique = this.uniqueName(name);
    this.initializers.push({ name: unique, dataType: dataTypes[type], dims, rawData });
    return unique;
  }

  private uniqueName(base: string): string {
    let name = base;
    for (let n = 1; this.usedNames.has(name); n++) name = `${base}_${n}`;
    this.usedNames.add(name);
    return name;
  }
}

function valueInfo(spec: ValueSpec): ValueInfoProto {
  return {
    name: spec.name,
    type: {
      tensorType: {
        elemType: dataTypes[spec.type],
        shape: { dim: spec.shape.map((dim) => (typeof dim === 'number' ? { dimValue: dim } : { dimParam: dim })) },
      },
    },
  };
}

export interface EncodedModel {
  model: Uint8Array;
  /** The external data file's bytes, when initializers were moved out of the model. */
  externalData?: Uint8Array;
}

/**
 * Serializes a model; with `externalDataLocation`, every initializer of at least 1 KiB goes into one external
 * data file at that location (relative to the model file), as onnx.save_model(save_as_external_data=True) does.
 */
export function encodeModel(model: ModelProto, externalDataLocation?: string): EncodedModel {
  if (externalDataLocation === undefined) return { model: onnx.ModelProto.encode(model).finish() };

  const chunks: Uint8Array[] = [];
  let offset = 0;
  const initializers = (model.graph?.initializer ?? []).map((tensor): TensorProto => {
    const raw = tensor.rawData;
    if (!raw || raw.byteLength < EXTERNAL_DATA_THRESHOLD_BYTES) return tensor;
    const entry: TensorProto = {
      ...tensor,
      rawData: null,
      dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
      externalData: [
        { key: 'location', value: externalDataLocation },
        { key: 'offset', value: String(offset) },
        { key: 'length', value: String(raw.byteLength) },
      ],
    };
    chunks.push(raw);
    offset += raw.byteLength;
    return entry;
  });

  const externalData = new Uint8Array(offset);
  let position = 0;
  for (const chunk of chunks) {
    externalData.set(chunk, position);
    position += chunk.byteLength;
  }
  const moved = { ...model, graph: { ...model.graph, initializer: initializers } };
  return { model: onnx.ModelProto.encode(moved).finish(), externalData };
}
