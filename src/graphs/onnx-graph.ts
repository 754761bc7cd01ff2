import type { onnx as OnnxTypes } from 'onnx-proto';
import onnxProto from 'onnx-proto';
import { float32ToFloat16 } from '../pipeline/float16.ts';
import type { ExternalDataFile } from './external-data.ts';
import { type WeightInit, type WeightSource, transpose2d } from './weights.ts';

// onnx-proto is CommonJS (module.exports = root), so its namespace is reached through the default export.
const { onnx } = onnxProto;
type AttributeProto = OnnxTypes.IAttributeProto;
type NodeProto = OnnxTypes.INodeProto;
type TensorProto = OnnxTypes.ITensorProto;
type ValueInfoProto = OnnxTypes.IValueInfoProto;
export type ModelProto = OnnxTypes.IModelProto;

/** fp16: float16 weights and activations, with the numerically fragile parts computed in float32. */
export type Precision = 'fp32' | 'fp16';
/**
 * How attention is written: 'unfused' as torch exports it (MatMul → Softmax → MatMul, which every execution
 * provider runs), 'fused' as com.microsoft MultiHeadAttention, whose CPU kernel never materialises the score
 * matrix (float32 only on the CPU).
 */
export type AttentionKind = 'unfused' | 'fused';
export type ElementType = 'float32' | 'float16' | 'int32' | 'int64';
export type Dim = number | string;

export interface ValueSpec {
  name: string;
  type: ElementType;
  shape: Dim[];
}

export interface GraphOptions {
  precision: Precision;
  attention: AttentionKind;
  /** Where parameter values come from; without one the graph is built with no weights, to count them. */
  weights?: WeightSource;
  /** Parameters of 1 KiB and more go to this file as they are read; without one they stay inside the model. */
  externalData?: ExternalDataFile;
  /** Told the bytes of every parameter as it is stored (progress). */
  onParameter?: (name: string, bytes: number) => void;
}

const OPSET = 17;
const IR_VERSION = 8;
export const MICROSOFT_DOMAIN = 'com.microsoft';
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

/** A parameter as the graph reads it: its torch shape, and what it is (for a source without trained values). */
export interface ParameterSpec {
  shape: number[];
  init: WeightInit;
}

export interface ParameterOptions {
  /** Store a 2-D torch weight [out, in] as [in, out], the layout MatMul takes. */
  transpose?: boolean;
  /** The dims the graph uses when they differ from torch's but hold the same values (e.g. [C] as [C, 1, 1]). */
  graphDims?: number[];
}

/**
 * Collects the nodes and initializers of one ONNX graph. Parameters are named as in the model's PyTorch state
 * dict (diffusers' / transformers' names) and read from the weight source in torch's layout as they are added,
 * then stored in the graph's float type, inside the model or appended to its external data file, so a graph of
 * any size is written holding one tensor at a time.
 */
export class GraphBuilder {
  /** Values of every parameter added (torch's numel() summed). */
  parameterCount = 0;
  /** Every parameter the graph reads, by state-dict name, in the order it reads them. */
  readonly parameters = new Map<string, ParameterSpec>();
  private readonly nodes: NodeProto[] = [];
  private readonly initializers: TensorProto[] = [];
  private readonly usedNames = new Set<string>();
  private usesMicrosoftDomain = false;

  constructor(readonly options: GraphOptions) {}

  get precision(): Precision {
    return this.options.precision;
  }

  get floatType(): ElementType {
    return this.options.precision === 'fp16' ? 'float16' : 'float32';
  }

  get attention(): AttentionKind {
    return this.options.attention;
  }

  /** Adds a node with one output (named `output` when given) and returns that output's name. */
  op(opType: string, inputs: string[], attributes: AttributeProto[] = [], output?: string, domain?: string): string {
    const name = this.uniqueName(output ?? opType);
    this.nodes.push({ opType, name: `${opType}_${name}`, input: inputs, output: [name], attribute: attributes, ...(domain ? { domain } : {}) });
    if (domain === MICROSOFT_DOMAIN) this.usesMicrosoftDomain = true;
    return name;
  }

  cast(x: string, type: ElementType): string {
    return this.op('Cast', [x], [intAttr('to', dataTypes[type])]);
  }

  /** `x` in float32 whatever the graph's float type (for the parts fp16 cannot hold). */
  toFloat32(x: string): string {
    return this.floatType === 'float32' ? x : this.cast(x, 'float32');
  }

  /** `x` (float32) back in the graph's float type. */
  fromFloat32(x: string): string {
    return this.floatType === 'float32' ? x : this.cast(x, this.floatType);
  }

  /** A trained tensor of the model, named and shaped as in its torch state dict. */
  parameter(name: string, shape: number[], init: WeightInit, options: ParameterOptions = {}): string {
    const count = shape.reduce((a, b) => a * b, 1);
    this.parameterCount += count;
    this.parameters.set(name, { shape, init });
    const graphDims = options.graphDims ?? (options.transpose ? [shape[1], shape[0]] : shape);
    const source = this.options.weights;
    if (!source) return this.declare(name, this.floatType, graphDims);

    let values = source.read(name, shape, init);
    if (values.length !== count) throw new Error(`${name}: the weight source gave ${values.length} values for shape [${shape.join(', ')}]`);
    if (options.transpose) values = transpose2d(values, shape[0], shape[1]);
    const stored = this.floatType === 'float16' ? float32ToFloat16(values) : values;
    const bytes = new Uint8Array(stored.buffer, stored.byteOffset, stored.byteLength);
    this.options.onParameter?.(name, bytes.byteLength);
    const file = this.options.externalData;
    if (!file || bytes.byteLength < EXTERNAL_DATA_THRESHOLD_BYTES) return this.addInitializer(name, this.floatType, graphDims, bytes);

    const place = file.append(bytes);
    const unique = this.declare(name, this.floatType, graphDims);
    const tensor = this.initializers[this.initializers.length - 1];
    tensor.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
    tensor.externalData = [
      { key: 'location', value: file.location },
      { key: 'offset', value: String(place.offset) },
      { key: 'length', value: String(place.length) },
    ];
    return unique;
  }

  /** A float tensor that is part of the graph, not of the model's weights (a mask, a frequency table). */
  floatConstant(name: string, dims: number[], values: Float32Array | number[], type = this.floatType): string {
    const data = values instanceof Float32Array ? values : Float32Array.from(values);
    const raw = type === 'float16' ? float32ToFloat16(data) : data;
    return this.addInitializer(name, type, dims, new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength));
  }

  /** A scalar (shape []) in the graph's float type, e.g. an attention scale. */
  scalar(name: string, value: number, type = this.floatType): string {
    return this.floatConstant(name, [], [value], type);
  }

  int64Constant(name: string, values: number[], dims: number[] = [values.length]): string {
    const data = BigInt64Array.from(values, (value) => BigInt(value));
    return this.addInitializer(name, 'int64', dims, new Uint8Array(data.buffer));
  }

  toModel(graphName: string, inputs: ValueSpec[], outputs: ValueSpec[]): ModelProto {
    return {
      irVersion: IR_VERSION,
      opsetImport: [{ domain: '', version: OPSET }, ...(this.usesMicrosoftDomain ? [{ domain: MICROSOFT_DOMAIN, version: 1 }] : [])],
      producerName: 'imagine-bot',
      graph: {
        name: graphName,
        node: this.nodes,
        initializer: this.initializers,
        input: inputs.map(valueInfo),
        output: outputs.map(valueInfo),
      },
    };
  }

  private declare(name: string, type: ElementType, dims: number[]): string {
    return this.addInitializer(name, type, dims, undefined);
  }

  private addInitializer(name: string, type: ElementType, dims: number[], rawData: Uint8Array | undefined): string {
    const unique = this.uniqueName(name);
    this.initializers.push({ name: unique, dataType: dataTypes[type], dims, ...(rawData ? { rawData } : {}) });
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

export function encodeModel(model: ModelProto): Uint8Array {
  return onnx.ModelProto.encode(model).finish();
}
