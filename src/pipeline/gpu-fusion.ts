import onnxProto from 'onnx-proto';
import type { onnx as OnnxTypes } from 'onnx-proto';
import {
  GraphIndex,
  defaultOpset,
  fuseAttention,
  hasSubgraphs,
  importMicrosoftDomain,
  removeDeadNodes,
  removeUnreadInitializers,
} from './attention-fusion.ts';

// onnx-proto is CommonJS (module.exports = root), so its namespace is reached through the default export.
const { onnx } = onnxProto;
type ModelProto = OnnxTypes.IModelProto;
type NodeProto = OnnxTypes.INodeProto;
type AttributeProto = OnnxTypes.IAttributeProto;

const DataType = onnx.TensorProto.DataType;
const { INT, INTS, FLOAT } = onnx.AttributeProto.AttributeType;
const MICROSOFT_DOMAIN = 'com.microsoft';
const INT64_MAX = 2 ** 63 - 1;

/** The GPU providers whose fused operators these rewrites target. */
export type GpuProvider = 'cuda' | 'webgpu';

/**
 * The com.microsoft operators each GPU provider of onnxruntime 1.30 has kernels for, of those Stable Diffusion's
 * graphs can use (onnxruntime's contrib_ops/cuda and contrib_ops/webgpu kernel registrations). GroupNorm is CUDA's
 * only, and takes channels-last input; CUDA's BiasSplitGelu takes only SD's three feed-forward widths.
 */
const KERNELS: Record<GpuProvider, { groupNorm: boolean; biasSplitGeluWidths?: readonly number[] }> = {
  cuda: { groupNorm: true, biasSplitGeluWidths: [2560, 5120, 10240] },
  webgpu: { groupNorm: false },
};

export interface GpuFusions {
  multiHeadAttention: number;
  skipLayerNormalization: number;
  biasSplitGelu: number;
  groupNorm: number;
}

/**
 * Rewrites a graph for a GPU provider into the fused operators its kernels implement, the same numbers to float
 * rounding: attention (float16 too) into MultiHeadAttention (see attention-fusion.ts), residual Add + LayerNorm
 * into SkipLayerNormalization, GEGLU's bias + split + GELU into BiasSplitGelu, and on CUDA GroupNorm (+ SiLU)
 * into GroupNorm. Patterns are those the project's graph builder writes and torch's exporter writes for diffusers'
 * modules; anything else is left as it is. The model is changed in place; returns what was fused.
 */
export function fuseForGpu(model: ModelProto, provider: GpuProvider): GpuFusions {
  const none: GpuFusions = { multiHeadAttention: 0, skipLayerNormalization: 0, biasSplitGelu: 0, groupNorm: 0 };
  if (!model.graph?.node || hasSubgraphs(model.graph)) return none;
  const kernels = KERNELS[provider];
  return {
    multiHeadAttention: fuseAttention(model, { float16: true }),
    skipLayerNormalization: fuseSkipLayerNormalization(model),
    biasSplitGelu: fuseBiasSplitGelu(model, kernels.biasSplitGeluWidths),
    groupNorm: kernels.groupNorm ? fuseGroupNorm(model) : 0,
  };
}

export function totalFusions(fusions: GpuFusions): number {
  return fusions.multiHeadAttention + fusions.skipLayerNormalization + fusions.biasSplitGelu + fusions.groupNorm;
}

/** One rewrite: the nodes a match replaces, and what replaces them (placed where the last replaced node was). */
interface Replacement {
  removed: NodeProto[];
  added: NodeProto[];
}

/** Applies non-overlapping replacements, then drops what no longer feeds anything. */
function apply(model: ModelProto, replacements: Replacement[]): number {
  const graph = model.graph!;
  if (replacements.length === 0) return 0;
  const removed = new Set<NodeProto>();
  const at = new Map<NodeProto, NodeProto[]>();
  for (const { removed: nodes, added } of replacements) {
    for (const node of nodes) removed.add(node);
    const last = nodes.reduce((latest, node) => (graph.node!.indexOf(node) > graph.node!.indexOf(latest) ? node : latest));
    at.set(last, added);
  }
  graph.node = graph.node!.flatMap((node) => at.get(node) ?? (removed.has(node) ? [] : [node]));
  removeDeadNodes(graph);
  removeUnreadInitializers(graph);
  importMicrosoftDomain(model);
  return replacements.length;
}

/** Matches over the graph as it is now; a node already claimed by an earlier match is not matched again. */
function collect(model: ModelProto, starts: (node: NodeProto) => boolean, match: (index: GraphIndex, node: NodeProto, ordinal: number) => Replacement | undefined): Replacement[] {
  const graph = model.graph!;
  const index = new GraphIndex(graph, defaultOpset(model));
  const claimed = new Set<NodeProto>();
  const replacements: Replacement[] = [];
  for (const node of graph.node!.filter((candidate) => !candidate.domain && starts(candidate))) {
    const replacement = match(index, node, replacements.length);
    if (!replacement || replacement.removed.some((removed) => claimed.has(removed)) || leaksIntermediate(index, replacement)) continue;
    for (const removed of replacement.removed) claimed.add(removed);
    replacements.push(replacement);
  }
  return replacements;
}

/** Whether a removed node's output that the replacement does not produce is still read (by a kept node or as a graph output). */
function leaksIntermediate(index: GraphIndex, { removed, added }: Replacement): boolean {
  const removedNodes = new Set(removed);
  const produced = new Set(added.flatMap((node) => node.output ?? []));
  return removed.some((node) =>
    (node.output ?? []).some(
      (output) => !produced.has(output) && (index.isGraphOutput(output) || index.consumersOf(output).some((reader) => !removedNodes.has(reader))),
    ),
  );
}

function attribute(node: NodeProto, name: string): AttributeProto | undefined {
  return node.attribute?.find((candidate) => candidate.name === name);
}

function microsoftNode(opType: string, name: string, input: string[], output: string[], attributes: AttributeProto[]): NodeProto {
  return { opType, domain: MICROSOFT_DOMAIN, name, input, output, attribute: attributes };
}

/** The one other input of a two-input node, given one of them. */
function otherInput(node: NodeProto, input: string): string | undefined {
  const [a = '', b = ''] = node.input ?? [];
  if (a === input) return b;
  if (b === input) return a;
  return undefined;
}

/**
 * LayerNormalization(a + b) over the last axis → SkipLayerNormalization(a, b), its fourth output the sum for the
 * residual path; when a is itself `x + bias` (the linear projection before the residual), the bias goes in too.
 */
export function fuseSkipLayerNormalization(model: ModelProto): number {
  const replacements = collect(model, (node) => node.opType === 'LayerNormalization', (index, norm, ordinal) => {
    const axis = attribute(norm, 'axis')?.i;
    if (axis != null && Number(axis) !== -1) return undefined;
    const [sum = '', scale = '', shift = ''] = norm.input ?? [];
    const add = index.producerOf(sum);
    if (add?.opType !== 'Add' || add.domain || !index.initializer(scale)) return undefined;
    const [a = '', b = ''] = add.input ?? [];
    const rank = index.rank(sum);
    if (index.initializer(a) || index.initializer(b) || (rank !== undefined && rank !== 3)) return undefined;

    const removed = [add, norm];
    let [input, skip, bias] = [a, b, ''];
    for (const [candidate, other] of [[a, b], [b, a]]) {
      const biasAdd = index.soleProducerOf(candidate);
      if (biasAdd?.opType !== 'Add' || biasAdd.domain) continue;
      const [x = '', y = ''] = biasAdd.input ?? [];
      const found = [[x, y], [y, x]].find(([, maybeBias]) => index.initializer(maybeBias)?.dims?.length === 1);
      if (!found || index.initializer(found[0])) continue;
      [input, skip, bias] = [found[0], other, found[1]];
      removed.unshift(biasAdd);
      break;
    }
    const sumIsRead = index.consumersOf(sum).length > 1 || index.soleConsumer(sum) === undefined;
    const epsilon = attribute(norm, 'epsilon')?.f ?? 1e-5;
    const inputs = [input, skip, scale, shift, ...(bias ? [bias] : [])];
    const outputs = [norm.output?.[0] ?? '', ...(sumIsRead ? ['', '', sum] : [])];
    const fused = microsoftNode('SkipLayerNormalization', `gpu_fusion/skip_layer_norm/${ordinal}`, inputs, outputs, [{ name: 'epsilon', type: FLOAT, f: epsilon }]);
    return { removed, added: [fused] };
  });
  return apply(model, replacements);
}

/**
 * GEGLU: value · GELU(gate) with [value, gate] the two halves of x·W + bias → BiasSplitGelu(x·W, bias). `widths`
 * limits it to the widths a provider's kernel takes. GELU is matched as torch exports it: x · ½(1 + erf(x/√2)).
 */
export function fuseBiasSplitGelu(model: ModelProto, widths?: readonly number[]): number {
  const replacements = collect(model, (node) => node.opType === 'Mul', (index, product, ordinal) => {
    const [a = '', b = ''] = product.input ?? [];
    for (const [value, activated] of [[a, b], [b, a]]) {
      const gelu = matchGelu(index, activated);
      if (!gelu) continue;
      const halves = matchHalves(index, value, gelu.input);
      if (!halves) continue;
      if (widths && !widths.includes(halves.width)) return undefined;
      const fused = microsoftNode('BiasSplitGelu', `gpu_fusion/bias_split_gelu/${ordinal}`, [halves.input, halves.bias], [product.output?.[0] ?? ''], []);
      return { removed: [...halves.nodes, ...gelu.nodes, product], added: [fused] };
    }
    return undefined;
  });
  return apply(model, replacements);
}

/** x · ½(1 + erf(x/√2)) ending in `output`: the GELU's input and its nodes. */
function matchGelu(index: GraphIndex, output: string): { input: string; nodes: NodeProto[] } | undefined {
  const half = index.soleProducerOf(output);
  if (half?.opType !== 'Mul' || half.domain) return undefined;
  const scaled = [0, 1].map((i) => [half.input?.[i] ?? '', half.input?.[1 - i] ?? ''] as const).find(([, constant]) => index.scalarConstant(constant) === 0.5);
  const times = scaled && index.soleProducerOf(scaled[0]);
  if (times?.opType !== 'Mul' || times.domain) return undefined;
  for (const [x, onePlus] of [[times.input?.[0] ?? '', times.input?.[1] ?? ''], [times.input?.[1] ?? '', times.input?.[0] ?? '']]) {
    const add = index.soleProducerOf(onePlus);
    if (add?.opType !== 'Add' || add.domain) continue;
    const erfOutput = [add.input?.[0] ?? '', add.input?.[1] ?? ''].find((input) => index.scalarConstant(otherInput(add, input) ?? '') === 1);
    const erf = erfOutput === undefined ? undefined : index.soleProducerOf(erfOutput);
    if (erf?.opType !== 'Erf' || erf.domain) continue;
    const divide = index.soleProducerOf(erf.input?.[0] ?? '');
    if (!divide || divide.domain || divide.input?.[0] !== x) continue;
    const divisor = index.scalarConstant(divide.input?.[1] ?? '');
    const isOverRoot2 =
      divisor !== undefined &&
      ((divide.opType === 'Div' && Math.abs(divisor - Math.SQRT2) < 1e-3) || (divide.opType === 'Mul' && Math.abs(divisor - Math.SQRT1_2) < 1e-3));
    if (isOverRoot2) return { input: x, nodes: [divide, erf, add, times, half] };
  }
  return undefined;
}

/** `value` and `gate` as the first and second halves (last axis) of `input + bias`, cut by two Slices or one Split. */
function matchHalves(index: GraphIndex, value: string, gate: string): { input: string; bias: string; width: number; nodes: NodeProto[] } | undefined {
  const [valueNode, gateNode] = [index.soleProducerOf(value), index.producerOf(gate)];
  if (!valueNode || !gateNode || valueNode.domain || gateNode.domain) return undefined;
  const projected = valueNode.input?.[0] ?? '';
  const biasAdd = index.producerOf(projected);
  if (biasAdd?.opType !== 'Add' || biasAdd.domain) return undefined;
  const [x = '', y = ''] = biasAdd.input ?? [];
  const [input, bias] = index.initializer(y)?.dims?.length === 1 ? [x, y] : index.initializer(x)?.dims?.length === 1 ? [y, x] : ['', ''];
  const width = Number(index.initializer(bias)?.dims?.[0] ?? 0);
  if (!input || width % 2 !== 0 || index.consumersOf(projected).length !== (valueNode === gateNode ? 1 : 2)) return undefined;
  const half = width / 2;

  if (valueNode === gateNode) {
    // Split(projected) → [value, gate] along the last axis, in two equal parts.
    if (valueNode.opType !== 'Split' || valueNode.output?.[0] !== value || valueNode.output?.[1] !== gate || valueNode.output.length !== 2) return undefined;
    const axis = Number(attribute(valueNode, 'axis')?.i ?? 0);
    const sizes = valueNode.input?.[1] ? index.constantValues(valueNode.input[1]) : (attribute(valueNode, 'split')?.ints?.map(Number) ?? [half, half]);
    if ((axis !== -1 && axis !== 2) || sizes?.[0] !== half || sizes?.[1] !== half) return undefined;
    return { input, bias, width, nodes: [biasAdd, valueNode] };
  }
  const isSlice = (node: NodeProto, start: number, end: number) => {
    if (node.opType !== 'Slice' || node.input?.[0] !== projected) return false;
    const [starts, ends, axes, steps] = [1, 2, 3, 4].map((i) => (node.input?.[i] ? index.constantValues(node.input[i]) : undefined));
    const lastAxis = axes?.length === 1 && (axes[0] === -1 || axes[0] === 2);
    const unitStep = !node.input?.[4] || (steps?.length === 1 && steps[0] === 1);
    return lastAxis && unitStep && starts?.[0] === start && ends !== undefined && (ends[0] === end || (end === width && ends[0] >= INT64_MAX / 2));
  };
  if (!isSlice(valueNode, 0, half) || !isSlice(gateNode, half, width)) return undefined;
  return { input, bias, width, nodes: [biasAdd, valueNode, gateNode] };
}

/**
 * GroupNorm as torch exports it (and the builder writes it: layers.ts), Reshape [0, G, -1] → InstanceNormalization
 * (scale 1, shift 0) → Reshape back → · γ + β, with float32 casts around the statistics in an fp16 graph, and the
 * SiLU after it where there is one → Transpose to channels-last, com.microsoft GroupNorm (its statistics in float32,
 * γ and β float32, the SiLU as its activation), Transpose back. CUDA only.
 */
export function fuseGroupNorm(model: ModelProto): number {
  const graph = model.graph!;
  const extraInitializers: OnnxTypes.ITensorProto[] = [];
  const replacements = collect(model, (node) => node.opType === 'InstanceNormalization', (index, instanceNorm, ordinal) => {
    const [grouped = '', unitScale = '', zeroShift = ''] = instanceNorm.input ?? [];
    const groups = index.constantValues(unitScale);
    if (!groups?.every((value) => value === 1) || !index.constantValues(zeroShift)?.every((value) => value === 0)) return undefined;
    const reshapeIn = index.soleProducerOf(grouped);
    if (reshapeIn?.opType !== 'Reshape' || reshapeIn.domain) return undefined;
    const groupShape = index.constantValues(reshapeIn.input?.[1] ?? '');
    if (groupShape?.length !== 3 || groupShape[0] !== 0 || groupShape[1] !== groups.length || groupShape[2] !== -1) return undefined;
    const nodes: NodeProto[] = [reshapeIn, instanceNorm];
    let x = reshapeIn.input?.[0] ?? '';
    const castIn = index.soleProducerOf(x);
    if (castIn?.opType === 'Cast' && !castIn.domain && Number(attribute(castIn, 'to')?.i) === DataType.FLOAT) {
      nodes.unshift(castIn);
      x = castIn.input?.[0] ?? '';
    }

    const reshapeOut = index.soleConsumer(instanceNorm.output?.[0] ?? '');
    const shapeOf = reshapeOut && index.producerOf(reshapeOut.input?.[1] ?? '');
    const rank = index.rank(x);
    if (reshapeOut?.opType !== 'Reshape' || shapeOf?.opType !== 'Shape' || shapeOf.input?.[0] !== x || (rank !== undefined && rank !== 4)) return undefined;
    nodes.push(reshapeOut);
    let restored = reshapeOut.output?.[0] ?? '';
    const castOut = index.soleConsumer(restored);
    if (castOut?.opType === 'Cast' && !castOut.domain) {
      nodes.push(castOut);
      restored = castOut.output?.[0] ?? '';
    }
    const scale = index.soleConsumer(restored);
    const gamma = scale?.opType === 'Mul' ? otherInput(scale, restored) : undefined;
    const shift = scale && index.soleConsumer(scale.output?.[0] ?? '');
    const beta = shift?.opType === 'Add' ? otherInput(shift, scale!.output?.[0] ?? '') : undefined;
    const channels = channelVector(index, gamma);
    if (!scale || !shift || !gamma || !beta || channels === undefined || channelVector(index, beta) !== channels) return undefined;
    nodes.push(scale, shift);

    let output = shift.output?.[0] ?? '';
    let activation = 0;
    const silu = matchSilu(index, output);
    if (silu) {
      nodes.push(...silu.nodes);
      output = silu.output;
      activation = 1;
    }

    const prefix = `gpu_fusion/group_norm/${ordinal}`;
    const flatShape = `${prefix}/channel_shape`;
    extraInitializers.push({ name: flatShape, dataType: DataType.INT64, dims: [1], rawData: new Uint8Array(BigInt64Array.from([-1n]).buffer) });
    const asFloatVector = (tensor: string, label: string): NodeProto[] => {
      const reshaped: NodeProto = { opType: 'Reshape', name: `${prefix}/${label}_vector`, input: [tensor, flatShape], output: [`${prefix}/${label}_vector`] };
      const cast: NodeProto = { opType: 'Cast', name: `${prefix}/${label}`, input: [`${prefix}/${label}_vector`], output: [`${prefix}/${label}`], attribute: [{ name: 'to', type: INT, i: DataType.FLOAT }] };
      return [reshaped, cast];
    };
    const transpose = (input: string, output: string, perm: number[]): NodeProto => ({
      opType: 'Transpose',
      name: output,
      input: [input],
      output: [output],
      attribute: [{ name: 'perm', type: INTS, ints: perm }],
    });
    const epsilon = attribute(instanceNorm, 'epsilon')?.f ?? 1e-5;
    const fused = microsoftNode('GroupNorm', prefix, [`${prefix}/channels_last`, `${prefix}/gamma`, `${prefix}/beta`], [`${prefix}/output`], [
      { name: 'epsilon', type: FLOAT, f: epsilon },
      { name: 'groups', type: INT, i: groups.length },
      { name: 'activation', type: INT, i: activation },
      { name: 'channels_last', type: INT, i: 1 },
    ]);
    const added = [
      ...asFloatVector(gamma, 'gamma'),
      ...asFloatVector(beta, 'beta'),
      transpose(x, `${prefix}/channels_last`, [0, 2, 3, 1]),
      fused,
      transpose(`${prefix}/output`, output, [0, 3, 1, 2]),
    ];
    return { removed: nodes, added };
  });
  graph.initializer = [...(graph.initializer ?? []), ...extraInitializers];
  const count = apply(model, replacements);
  if (count === 0) removeUnreadInitializers(graph);
  return count;
}

/** The channel count of a per-channel initializer shaped [C, 1, 1] (or [C]). */
function channelVector(index: GraphIndex, tensor: string | undefined): number | undefined {
  const dims = tensor === undefined ? undefined : index.initializer(tensor)?.dims?.map(Number);
  if (!dims || dims.length === 0 || dims.slice(1).some((dim) => dim !== 1)) return undefined;
  return dims[0];
}

/** x · sigmoid(x) reading `x`, when nothing else reads x or the sigmoid. */
function matchSilu(index: GraphIndex, x: string): { output: string; nodes: NodeProto[] } | undefined {
  const readers = index.consumersOf(x);
  const sigmoid = readers.find((node) => node.opType === 'Sigmoid' && !node.domain);
  const product = readers.find((node) => node.opType === 'Mul' && !node.domain);
  if (readers.length !== 2 || !sigmoid || !product || index.soleConsumer(sigmoid.output?.[0] ?? '') !== product) return undefined;
  if (otherInput(product, x) !== sigmoid.output?.[0]) return undefined;
  return { output: product.output?.[0] ?? '', nodes: [sigmoid, product] };
}

/**
 * Fixes named dimensions of the graph's inputs to sizes, as onnxruntime's freeDimensionOverrides would (which
 * onnxruntime-node 1.30 does not pass on): `sizes` gives, per input, the size of each axis to fix (undefined
 * leaves one free). Every input and output sharing a fixed dimension's name gets the size too, so the provider
 * sees one static shape and can plan its kernels and memory once; the session then runs only that shape.
 * Returns the names fixed.
 */
export function fixInputDimensions(model: ModelProto, sizes: Record<string, readonly (number | undefined)[]>): Map<string, number> {
  const graph = model.graph;
  const fixed = new Map<string, number>();
  for (const input of graph?.input ?? []) {
    const wanted = sizes[input.name ?? ''];
    const dims = input.type?.tensorType?.shape?.dim ?? [];
    if (!wanted) continue;
    if (wanted.length !== dims.length) throw new Error(`input ${input.name} has ${dims.length} dimensions, not ${wanted.length}`);
    dims.forEach((dim, axis) => {
      const size = wanted[axis];
      if (size === undefined) return;
      if (dim.dimParam) {
        const earlier = fixed.get(dim.dimParam);
        if (earlier !== undefined && earlier !== size) throw new Error(`dimension ${dim.dimParam} cannot be both ${earlier} and ${size}`);
        fixed.set(dim.dimParam, size);
      } else if (dim.dimValue != null && Number(dim.dimValue) !== size) {
        throw new Error(`input ${input.name}'s axis ${axis} is ${Number(dim.dimValue)}, not ${size}`);
      }
    });
  }
  for (const info of [...(graph?.input ?? []), ...(graph?.output ?? [])]) {
    for (const dim of info.type?.tensorType?.shape?.dim ?? []) {
      const size = dim.dimParam ? fixed.get(dim.dimParam) : undefined;
      if (size === undefined) continue;
      dim.dimValue = size;
      dim.dimParam = null;
    }
  }
  return fixed;
}
