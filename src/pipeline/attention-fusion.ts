import onnxProto from 'onnx-proto';
import type { onnx as OnnxTypes } from 'onnx-proto';
import { fromHalfBits } from './float16.ts';

// onnx-proto is CommonJS (module.exports = root), so its namespace is reached through the default export.
const { onnx } = onnxProto;
type ModelProto = OnnxTypes.IModelProto;
type NodeProto = OnnxTypes.INodeProto;
type TensorProto = OnnxTypes.ITensorProto;

const DataType = onnx.TensorProto.DataType;
const MICROSOFT_DOMAIN = 'com.microsoft';
const INT64_MAX = 2n ** 63n - 1n;
/** Float types onnxruntime's CPU MultiHeadAttention has no kernel for: a graph holding them is left as it is. */
const UNSUPPORTED_FLOAT_TYPES = new Set<number>([DataType.FLOAT16, DataType.BFLOAT16, DataType.DOUBLE]);

/**
 * Rewrites every unfused scaled-dot-product attention of a float32 graph,
 *
 *   MatMul(Q, Kᵀ) → [× or ÷ a constant, + zeros]* → Softmax(last axis) → [Cast to float]* → MatMul(·, V),
 *
 * into one com.microsoft MultiHeadAttention node (one head over batch × heads rows, the same scale). On the CPU
 * that kernel is a flash attention: it never materialises the [queries × keys] score matrix, which for SD 1.5's
 * U-Net at 512x512 is 1.07 GB per self-attention layer, twice (scores and softmax). The graphs torch's two ONNX
 * exporters write for diffusers' attention (scaled_dot_product_attention, and the older baddbmm + softmax + bmm)
 * match this, with Q and K already scaled or not. Attention with a real mask (CLIP's causal one) does not.
 * Returns how many attentions were fused; the model is changed in place.
 */
export function fuseAttention(model: ModelProto, options: AttentionFusionOptions = {}): number {
  const graph = model.graph;
  if (!graph?.node || hasSubgraphs(graph)) return 0;
  if (!options.float16 && (graph.initializer ?? []).some((tensor) => UNSUPPORTED_FLOAT_TYPES.has(tensor.dataType ?? 0))) return 0;

  const index = new GraphIndex(graph, defaultOpset(model));
  const replacements = new Map<NodeProto, NodeProto[]>();
  const removed = new Set<NodeProto>();
  for (const softmax of graph.node.filter((node) => node.opType === 'Softmax' && !node.domain)) {
    const match = matchAttention(index, softmax);
    if (!match || match.nodes.some((node) => removed.has(node))) continue;
    for (const node of match.nodes) removed.add(node);
    replacements.set(match.output, attentionNodes(graph, match, replacements.size));
  }
  if (replacements.size === 0) return 0;

  graph.node = graph.node.flatMap((node) => replacements.get(node) ?? (removed.has(node) ? [] : [node]));
  removeDeadNodes(graph);
  removeUnreadInitializers(graph);
  importMicrosoftDomain(model);
  return replacements.size;
}

/** Declares the com.microsoft operator set (onnxruntime's contrib operators) when the model does not yet. */
export function importMicrosoftDomain(model: ModelProto): void {
  if (!(model.opsetImport ?? []).some((opset) => opset.domain === MICROSOFT_DOMAIN)) {
    model.opsetImport = [...(model.opsetImport ?? []), { domain: MICROSOFT_DOMAIN, version: 1 }];
  }
}

export interface AttentionFusionOptions {
  /** Fuse float16 graphs too: for the GPU providers, whose MultiHeadAttention kernels take float16 (the CPU's does not). */
  float16?: boolean;
}

/** Subgraphs (If, Loop) read outer tensors without naming them as inputs: graph rewrites leave such graphs alone. */
export function hasSubgraphs(graph: OnnxTypes.IGraphProto): boolean {
  return (graph.node ?? []).some((node) => node.attribute?.some((attribute) => attribute.g || attribute.graphs?.length));
}

interface AttentionMatch {
  query: string;
  keyTransposed: string;
  value: string;
  scale: number;
  /** The tensor rank of Q, K and V (3: [batch·heads, tokens, width], 4: [batch, heads, tokens, width]). */
  rank: 3 | 4;
  /** The final MatMul, whose output the fused node takes over. */
  output: NodeProto;
  /** Every node the fused one replaces, the final MatMul included. */
  nodes: NodeProto[];
}

function matchAttention(index: GraphIndex, softmax: NodeProto): AttentionMatch | undefined {
  if (index.softmaxAxis(softmax) !== -1) return undefined;
  const nodes: NodeProto[] = [softmax];

  let probabilities = softmax.output?.[0] ?? '';
  let consumer = index.soleConsumer(probabilities);
  while (consumer?.opType === 'Cast' && index.intAttribute(consumer, 'to') === DataType.FLOAT) {
    nodes.push(consumer);
    probabilities = consumer.output?.[0] ?? '';
    consumer = index.soleConsumer(probabilities);
  }
  if (consumer?.opType !== 'MatMul' || consumer.domain || consumer.input?.[0] !== probabilities) return undefined;
  const output = consumer;
  nodes.push(output);

  let scale = 1;
  let scores = softmax.input?.[0] ?? '';
  for (;;) {
    const producer = index.soleProducerOf(scores);
    if (!producer || producer.domain) return undefined;
    nodes.push(producer);
    const [a = '', b = ''] = producer.input ?? [];
    if (producer.opType === 'MatMul') {
      const rank = index.rank(a) ?? index.rank(b) ?? index.rank(output.input?.[1] ?? '');
      if (rank !== 3 && rank !== 4) return undefined;
      return { query: a, keyTransposed: b, value: output.input?.[1] ?? '', scale, rank, output, nodes };
    }
    const [constantA, constantB] = [index.scalarConstant(a), index.scalarConstant(b)];
    if (producer.opType === 'Mul' && constantB !== undefined) [scores, scale] = [a, scale * constantB];
    else if (producer.opType === 'Mul' && constantA !== undefined) [scores, scale] = [b, scale * constantA];
    else if (producer.opType === 'Div' && constantB !== undefined) [scores, scale] = [a, scale / constantB];
    else if (producer.opType === 'Add' && index.isZeros(b)) scores = a;
    else if (producer.opType === 'Add' && index.isZeros(a)) scores = b;
    else return undefined;
  }
}

/** The fused node, with the reshapes that fold a 4-D [batch, heads, tokens, width] layout into 3-D and back. */
function attentionNodes(graph: OnnxTypes.IGraphProto, match: AttentionMatch, ordinal: number): NodeProto[] {
  const prefix = `attention_fusion/${ordinal}`;
  const finalOutput = match.output.output?.[0] ?? '';
  const nodes: NodeProto[] = [];
  const add = (opType: string, inputs: string[], name: string, attribute: OnnxTypes.IAttributeProto[] = [], output = `${prefix}/${name}`): string => {
    const domain = opType === 'MultiHeadAttention' ? MICROSOFT_DOMAIN : '';
    nodes.push({ opType, domain, name: `${prefix}/${name}`, input: inputs, output: [output], attribute });
    return output;
  };
  const constant = (name: string, values: bigint[]): string => {
    const tensorName = `${prefix}/${name}`;
    const data = BigInt64Array.from(values);
    graph.initializer = [
      ...(graph.initializer ?? []),
      { name: tensorName, dataType: DataType.INT64, dims: [values.length], rawData: new Uint8Array(data.buffer) },
    ];
    return tensorName;
  };
  const { INT, INTS, FLOAT } = onnx.AttributeProto.AttributeType;
  const perm = (values: number[]) => [{ name: 'perm', type: INTS, ints: values }];
  const concatAxis = [{ name: 'axis', type: INT, i: 0 }];
  const attention = [
    { name: 'num_heads', type: INT, i: 1 },
    { name: 'scale', type: FLOAT, f: match.scale },
  ];

  if (match.rank === 3) {
    const key = add('Transpose', [match.keyTransposed], 'key', perm([0, 2, 1]));
    add('MultiHeadAttention', [match.query, key, match.value], 'attention', attention, finalOutput);
    return nodes;
  }

  const lastTwo = [constant('last_two_starts', [-2n]), constant('last_two_ends', [INT64_MAX])];
  const toThreeDims = (tensor: string, name: string): string => {
    const tokensAndWidth = add('Slice', [add('Shape', [tensor], `${name}_shape`), ...lastTwo], `${name}_tokens_width`);
    const shape = add('Concat', [constant(`${name}_rows`, [-1n]), tokensAndWidth], `${name}_3d_shape`, concatAxis);
    return add('Reshape', [tensor, shape], `${name}_3d`);
  };
  const query = toThreeDims(match.query, 'query');
  const key = toThreeDims(add('Transpose', [match.keyTransposed], 'key', perm([0, 1, 3, 2])), 'key');
  const value = toThreeDims(match.value, 'value');
  const attended = add('MultiHeadAttention', [query, key, value], 'attention', attention);

  const queryShape = add('Shape', [match.query], 'query_4d_shape');
  const batchHeadsTokens = add('Slice', [queryShape, constant('first_three_starts', [0n]), constant('first_three_ends', [3n])], 'batch_heads_tokens');
  const valueShape = add('Shape', [match.value], 'value_4d_shape');
  const valueWidth = add('Slice', [valueShape, constant('last_starts', [-1n]), lastTwo[1]], 'value_width');
  const outputShape = add('Concat', [batchHeadsTokens, valueWidth], 'output_shape', concatAxis);
  add('Reshape', [attended, outputShape], 'output', [], finalOutput);
  return nodes;
}

/** Producers, consumers and constants of one graph, and the little shape reasoning the matchers need. */
export class GraphIndex {
  private readonly producers = new Map<string, NodeProto>();
  private readonly consumers = new Map<string, NodeProto[]>();
  private readonly initializers = new Map<string, TensorProto>();
  private readonly graphOutputs: Set<string>;
  /** Ranks declared for graph inputs, outputs and value_info entries. */
  private readonly declaredRanks = new Map<string, number>();

  constructor(
    graph: OnnxTypes.IGraphProto,
    private readonly opset: number,
  ) {
    for (const node of graph.node ?? []) {
      for (const output of node.output ?? []) this.producers.set(output, node);
      for (const input of node.input ?? []) {
        if (!input) continue;
        const readers = this.consumers.get(input);
        if (readers) readers.push(node);
        else this.consumers.set(input, [node]);
      }
    }
    for (const tensor of graph.initializer ?? []) this.initializers.set(tensor.name ?? '', tensor);
    this.graphOutputs = new Set((graph.output ?? []).map((output) => output.name ?? ''));
    for (const info of [...(graph.input ?? []), ...(graph.valueInfo ?? []), ...(graph.output ?? [])]) {
      const dims = info.type?.tensorType?.shape?.dim;
      if (dims) this.declaredRanks.set(info.name ?? '', dims.length);
    }
  }

  /** The node that consumes `tensor`, when it is the only one and the tensor is not a graph output. */
  soleConsumer(tensor: string): NodeProto | undefined {
    const consumers = this.consumers.get(tensor) ?? [];
    return consumers.length === 1 && !this.graphOutputs.has(tensor) ? consumers[0] : undefined;
  }

  isGraphOutput(tensor: string): boolean {
    return this.graphOutputs.has(tensor);
  }

  producerOf(tensor: string): NodeProto | undefined {
    return this.producers.get(tensor);
  }

  consumersOf(tensor: string): readonly NodeProto[] {
    return this.consumers.get(tensor) ?? [];
  }

  initializer(tensor: string): TensorProto | undefined {
    return this.initializers.get(tensor);
  }

  /** The node that produces `tensor`, when nothing else reads it (so the node can go with the attention). */
  soleProducerOf(tensor: string): NodeProto | undefined {
    return this.soleConsumer(tensor) ? this.producers.get(tensor) : undefined;
  }

  /** Softmax's axis; before opset 13 it defaulted to 1 (and flattened from there, the same for the last axis). */
  softmaxAxis(softmax: NodeProto): number {
    return this.intAttribute(softmax, 'axis') ?? (this.opset >= 13 ? -1 : 1);
  }

  intAttribute(node: NodeProto, name: string): number | undefined {
    const attribute = node.attribute?.find((candidate) => candidate.name === name);
    return attribute?.i == null ? undefined : Number(attribute.i);
  }

  /** The value of a one-element float constant (an initializer or a Constant node's output). */
  scalarConstant(tensor: string): number | undefined {
    const values = this.constantValues(tensor);
    return values?.length === 1 ? values[0] : undefined;
  }

  /**
   * Whether `tensor` is all zeros by construction: what torch writes for baddbmm's `beta · input` with beta = 0
   * (a finite fill times a zero constant), or a constant of zeros. Adding it changes no score.
   */
  isZeros(tensor: string): boolean {
    const constant = this.constantValues(tensor);
    if (constant) return constant.every((value) => value === 0);
    const producer = this.producers.get(tensor);
    if (producer?.opType !== 'Mul' || producer.domain) return false;
    const [a = '', b = ''] = producer.input ?? [];
    return (this.scalarConstant(b) === 0 && this.isFiniteFill(a)) || (this.scalarConstant(a) === 0 && this.isFiniteFill(b));
  }

  /** The number of dimensions of `tensor`, where its producers make it plain; undefined when they do not. */
  rank(tensor: string, depth = 0): number | undefined {
    if (this.declaredRanks.has(tensor)) return this.declaredRanks.get(tensor);
    const producer = this.producers.get(tensor);
    if (!producer || producer.domain || depth > 8) return undefined;
    const [a = '', b = ''] = producer.input ?? [];
    switch (producer.opType) {
      case 'Transpose':
        return producer.attribute?.find((attribute) => attribute.name === 'perm')?.ints?.length;
      case 'Reshape':
        return this.shapeLength(b);
      case 'Mul':
      case 'Div':
      case 'Add':
      case 'Cast':
      case 'Softmax': {
        // Elementwise: as many dimensions as the widest operand (a scalar operand has fewer).
        const ranks = [this.rank(a, depth + 1), b ? this.rank(b, depth + 1) : undefined].filter((rank) => rank !== undefined);
        return ranks.length > 0 ? Math.max(...ranks) : undefined;
      }
      default:
        return undefined;
    }
  }

  /** The length of a 1-D shape tensor: a constant, or a Concat of pieces whose lengths are known. */
  private shapeLength(tensor: string): number | undefined {
    const constant = this.constantValues(tensor);
    if (constant) return constant.length;
    const producer = this.producers.get(tensor);
    if (producer?.opType !== 'Concat' || producer.domain) return undefined;
    let length = 0;
    for (const piece of producer.input ?? []) {
      const pieceLength = this.constantValues(piece)?.length ?? (this.producers.get(piece)?.opType === 'Unsqueeze' ? 1 : undefined);
      if (pieceLength === undefined) return undefined;
      length += pieceLength;
    }
    return length;
  }

  private isFiniteFill(tensor: string): boolean {
    const producer = this.producers.get(tensor);
    if (!producer || producer.domain) return false;
    if (producer.opType === 'ConstantOfShape') {
      const fill = producer.attribute?.find((attribute) => attribute.name === 'value')?.t;
      return !fill || (tensorValues(fill)?.every(Number.isFinite) ?? false);
    }
    if (producer.opType === 'Expand') return this.constantValues(producer.input?.[0] ?? '')?.every(Number.isFinite) ?? false;
    return false;
  }

  /** The values of a small constant (an inline initializer or a Constant node's output); undefined otherwise. */
  constantValues(tensor: string): number[] | undefined {
    const initializer = this.initializers.get(tensor);
    if (initializer) return tensorValues(initializer);
    const producer = this.producers.get(tensor);
    if (producer?.opType !== 'Constant' || producer.domain) return undefined;
    const attribute = producer.attribute?.[0];
    if (attribute?.name === 'value' && attribute.t) return tensorValues(attribute.t);
    if (attribute?.name === 'value_float') return [attribute.f ?? 0];
    if (attribute?.name === 'value_floats') return attribute.floats ?? undefined;
    if (attribute?.name === 'value_int') return [Number(attribute.i ?? 0)];
    if (attribute?.name === 'value_ints') return attribute.ints?.map(Number) ?? undefined;
    return undefined;
  }
}

/** The values of a small numeric tensor stored inline; undefined for external data or other types. */
function tensorValues(tensor: TensorProto): number[] | undefined {
  const raw = tensor.rawData;
  const count = (tensor.dims ?? []).reduce<number>((product, dim) => product * Number(dim), 1);
  if (count > 64) return undefined;
  if (raw && raw.byteLength > 0) {
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const read: Partial<Record<number, [number, (offset: number) => number]>> = {
      [DataType.FLOAT]: [4, (offset) => view.getFloat32(offset, true)],
      [DataType.FLOAT16]: [2, (offset) => fromHalfBits(view.getUint16(offset, true))],
      [DataType.DOUBLE]: [8, (offset) => view.getFloat64(offset, true)],
      [DataType.INT64]: [8, (offset) => Number(view.getBigInt64(offset, true))],
      [DataType.INT32]: [4, (offset) => view.getInt32(offset, true)],
    };
    const reader = read[tensor.dataType ?? 0];
    if (!reader || raw.byteLength !== reader[0] * count) return undefined;
    return Array.from({ length: count }, (_, i) => reader[1](i * reader[0]));
  }
  const values = tensor.floatData?.length ? tensor.floatData : tensor.doubleData?.length ? tensor.doubleData : (tensor.int64Data ?? tensor.int32Data);
  return values && values.length === count ? Array.from(values, Number) : undefined;
}

export function defaultOpset(model: ModelProto): number {
  return Number((model.opsetImport ?? []).find((entry) => !entry.domain)?.version ?? 1);
}

/** Drops nodes none of whose outputs is read any more (the fill that fed a removed `+ zeros`, say). */
export function removeDeadNodes(graph: OnnxTypes.IGraphProto): void {
  const graphOutputs = new Set((graph.output ?? []).map((output) => output.name ?? ''));
  for (;;) {
    const read = new Set<string>(graphOutputs);
    for (const node of graph.node ?? []) for (const input of node.input ?? []) read.add(input);
    const live = (graph.node ?? []).filter((node) => (node.output ?? []).some((output) => read.has(output)));
    if (live.length === graph.node?.length) return;
    graph.node = live;
  }
}

/** Drops initializers nothing reads any more (the scale constants now in the fused nodes' attributes). */
export function removeUnreadInitializers(graph: OnnxTypes.IGraphProto): void {
  const read = new Set((graph.node ?? []).flatMap((node) => node.input ?? []));
  for (const output of graph.output ?? []) read.add(output.name ?? '');
  const unread = new Set((graph.initializer ?? []).map((tensor) => tensor.name ?? '').filter((name) => !read.has(name)));
  graph.initializer = (graph.initializer ?? []).filter((tensor) => !unread.has(tensor.name ?? ''));
  // Before IR version 4 initializers were also listed as graph inputs; an input without its initializer would be required.
  graph.input = (graph.input ?? []).filter((input) => !unread.has(input.name ?? ''));
}
