import { type GraphBuilder, floatAttr, intAttr, intsAttr, stringAttr } from './graph.ts';

/*
 * Building blocks shared by the three tiny graphs. Weights are uniform with variance 1/fan_in (LeCun), so
 * activations stay O(1) through the stacks; norm scales sit near 1 and shifts near 0.
 */

function weightBound(fanIn: number): number {
  return Math.sqrt(3 / fanIn);
}

/** y = x·W + b with W stored [in, out], as exporters store a transposed torch Linear for MatMul. */
export function linear(g: GraphBuilder, x: string, inFeatures: number, outFeatures: number, name: string, bias = true): string {
  const weight = g.parameter(`${name}.weight`, [inFeatures, outFeatures], weightBound(inFeatures));
  const product = g.op('MatMul', [x, weight]);
  if (!bias) return product;
  return g.op('Add', [product, g.parameter(`${name}.bias`, [outFeatures], 1 / Math.sqrt(inFeatures))]);
}

export interface ConvOptions {
  kernel?: number;
  stride?: number;
  /** Names the result (for a graph output). */
  output?: string;
}

/** A square Conv with "same" padding (stride 2 halves height and width). */
export function conv2d(
  g: GraphBuilder,
  x: string,
  inChannels: number,
  outChannels: number,
  name: string,
  { kernel = 3, stride = 1, output }: ConvOptions = {},
): string {
  const fanIn = inChannels * kernel * kernel;
  const weight = g.parameter(`${name}.weight`, [outChannels, inChannels, kernel, kernel], weightBound(fanIn));
  const bias = g.parameter(`${name}.bias`, [outChannels], 1 / Math.sqrt(fanIn));
  const pad = (kernel - 1) / 2;
  return g.op('Conv', [x, weight, bias], [
    intsAttr('kernel_shape', [kernel, kernel]),
    intsAttr('pads', [pad, pad, pad, pad]),
    intsAttr('strides', [stride, stride]),
  ], output);
}

/**
 * GroupNorm over NCHW, built from Reshape + InstanceNormalization (GroupNormalization only arrived in opset 18,
 * and onnxruntime's CPU provider runs this form at opset 17, as torch's own exporter emits it).
 */
export function groupNorm(g: GraphBuilder, x: string, channels: number, groups: number, epsilon: number, name: string): string {
  if (channels % groups !== 0) throw new Error(`${name}: ${channels} channels do not split into ${groups} groups`);
  const originalShape = g.op('Shape', [x]);
  const grouped = g.op('Reshape', [x, g.int64Constant(`${name}.group_shape`, [0, groups, -1])]);
  const unitScale = g.floatConstant(`${name}.instance_scale`, [groups], new Float32Array(groups).fill(1));
  const zeroShift = g.floatConstant(`${name}.instance_shift`, [groups], new Float32Array(groups));
  const normalized = g.op('InstanceNormalization', [grouped, unitScale, zeroShift], [floatAttr('epsilon', epsilon)]);
  const restored = g.op('Reshape', [normalized, originalShape]);
  const scaled = g.op('Mul', [restored, g.parameter(`${name}.weight`, [channels, 1, 1], 0.1, 1)]);
  return g.op('Add', [scaled, g.parameter(`${name}.bias`, [channels, 1, 1], 0.1)]);
}

/** LayerNorm over the last axis; `output` names the result (for a graph output). */
export function layerNorm(g: GraphBuilder, x: string, features: number, name: string, output?: string): string {
  const scale = g.parameter(`${name}.weight`, [features], 0.1, 1);
  const shift = g.parameter(`${name}.bias`, [features], 0.1);
  return g.op('LayerNormalization', [x, scale, shift], [intAttr('axis', -1), floatAttr('epsilon', 1e-5)], output);
}

export function silu(g: GraphBuilder, x: string): string {
  return g.op('Mul', [x, g.op('Sigmoid', [x])]);
}

/** CLIP's activation: x · sigmoid(1.702 x). */
export function quickGelu(g: GraphBuilder, x: string, name: string): string {
  return g.op('Mul', [x, g.op('Sigmoid', [g.op('Mul', [x, g.scalar(`${name}.quick_gelu_factor`, 1.702)])])]);
}

export interface AttentionOptions {
  /** Width of the query tokens and of the attention output. */
  channels: number;
  /** Width of the key/value tokens (the text embedding width for cross-attention). */
  contextChannels: number;
  heads: number;
  /** Added to the scores before Softmax, e.g. a causal mask of 0 / large negative values. */
  additiveMask?: string;
  /** CLIP has biases on q/k/v; the SD U-Net's attention does not. */
  projectionBias: boolean;
}

/** Multi-head attention of `query` tokens [batch, n, channels] over `context` tokens [batch, m, contextChannels]. */
export function attention(g: GraphBuilder, query: string, context: string, name: string, options: AttentionOptions): string {
  const { channels, contextChannels, heads, additiveMask, projectionBias } = options;
  if (channels % heads !== 0) throw new Error(`${name}: ${channels} channels do not split into ${heads} heads`);
  const headSize = channels / heads;
  const headShape = g.int64Constant(`${name}.head_shape`, [0, 0, heads, headSize]);

  const splitHeads = (x: string, perm: number[]) => g.op('Transpose', [g.op('Reshape', [x, headShape])], [intsAttr('perm', perm)]);
  const q = splitHeads(linear(g, query, channels, channels, `${name}.q_proj`, projectionBias), [0, 2, 1, 3]);
  const kTransposed = splitHeads(linear(g, context, contextChannels, channels, `${name}.k_proj`, projectionBias), [0, 2, 3, 1]);
  const v = splitHeads(linear(g, context, contextChannels, channels, `${name}.v_proj`, projectionBias), [0, 2, 1, 3]);

  let scores = g.op('Mul', [g.op('MatMul', [q, kTransposed]), g.scalar(`${name}.scale`, 1 / Math.sqrt(headSize))]);
  if (additiveMask) scores = g.op('Add', [scores, additiveMask]);
  const weights = g.op('Softmax', [scores], [intAttr('axis', -1)]);
  const merged = g.op('Transpose', [g.op('MatMul', [weights, v])], [intsAttr('perm', [0, 2, 1, 3])]);
  const flat = g.op('Reshape', [merged, g.int64Constant(`${name}.merged_shape`, [0, 0, channels])]);
  return linear(g, flat, channels, channels, `${name}.out_proj`);
}

/** SD's ResnetBlock2D: norm → SiLU → conv (+ time embedding) → norm → SiLU → conv, plus a (1×1 conv) shortcut. */
export function resnetBlock(
  g: GraphBuilder,
  x: string,
  inChannels: number,
  outChannels: number,
  name: string,
  norm: { groups: number; epsilon: number },
  timeEmbedding?: { value: string; channels: number },
): string {
  let h = conv2d(g, silu(g, groupNorm(g, x, inChannels, norm.groups, norm.epsilon, `${name}.norm1`)), inChannels, outChannels, `${name}.conv1`);
  if (timeEmbedding) {
    const projected = linear(g, silu(g, timeEmbedding.value), timeEmbedding.channels, outChannels, `${name}.time_emb_proj`);
    const perChannel = g.op('Unsqueeze', [projected, g.int64Constant(`${name}.time_axes`, [2, 3])]);
    h = g.op('Add', [h, perChannel]);
  }
  h = conv2d(g, silu(g, groupNorm(g, h, outChannels, norm.groups, norm.epsilon, `${name}.norm2`)), outChannels, outChannels, `${name}.conv2`);
  const shortcut = inChannels === outChannels ? x : conv2d(g, x, inChannels, outChannels, `${name}.conv_shortcut`, { kernel: 1 });
  return g.op('Add', [shortcut, h]);
}

/** Nearest-neighbour ×2 (the Resize SD's Upsample2D exports to). */
export function upsampleNearest2x(g: GraphBuilder, x: string, name: string): string {
  const scales = g.floatConstant(`${name}.scales`, [4], [1, 1, 2, 2], 'float32');
  return g.op('Resize', [x, '', scales], [
    stringAttr('mode', 'nearest'),
    stringAttr('coordinate_transformation_mode', 'asymmetric'),
    stringAttr('nearest_mode', 'floor'),
  ]);
}
