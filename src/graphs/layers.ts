import { type GraphBuilder, MICROSOFT_DOMAIN, floatAttr, intAttr, intsAttr, stringAttr } from './onnx-graph.ts';

/*
 * The torch modules Stable Diffusion's models are made of, as ONNX nodes. Each takes the module's state-dict
 * prefix (`name`) and reads its parameters under torch's names: `${name}.weight`, `${name}.bias`.
 */

/** nn.Linear: y = x·Wᵀ + b, W stored transposed ([in, out]) for MatMul. */
export function linear(g: GraphBuilder, x: string, name: string, inFeatures: number, outFeatures: number, bias = true): string {
  const weight = g.parameter(`${name}.weight`, [outFeatures, inFeatures], { kind: 'weight', fanIn: inFeatures }, { transpose: true });
  const product = g.op('MatMul', [x, weight]);
  if (!bias) return product;
  return g.op('Add', [product, g.parameter(`${name}.bias`, [outFeatures], { kind: 'bias', fanIn: inFeatures })]);
}

export interface ConvOptions {
  kernel?: number;
  stride?: number;
  /** [top, left, bottom, right]; default (kernel − 1) / 2 on every side. */
  pads?: [number, number, number, number];
  bias?: boolean;
  /** Names the result (for a graph output). */
  output?: string;
}

/** nn.Conv2d with a square kernel. */
export function conv2d(g: GraphBuilder, x: string, name: string, inChannels: number, outChannels: number, options: ConvOptions = {}): string {
  const { kernel = 3, stride = 1, bias = true, output } = options;
  const pad = (kernel - 1) / 2;
  const [top, left, bottom, right] = options.pads ?? [pad, pad, pad, pad];
  const fanIn = inChannels * kernel * kernel;
  const inputs = [x, g.parameter(`${name}.weight`, [outChannels, inChannels, kernel, kernel], { kind: 'weight', fanIn })];
  if (bias) inputs.push(g.parameter(`${name}.bias`, [outChannels], { kind: 'bias', fanIn }));
  return g.op('Conv', inputs, [
    intsAttr('kernel_shape', [kernel, kernel]),
    intsAttr('pads', [top, left, bottom, right]),
    intsAttr('strides', [stride, stride]),
  ], output);
}

/**
 * nn.GroupNorm over NCHW, as Reshape + InstanceNormalization (GroupNormalization only arrived in opset 18, and
 * onnxruntime's CPU provider runs this form at opset 17, as torch's own exporter emits it). The statistics are
 * computed in float32 in an fp16 graph: a group's sum of squares overflows float16.
 */
export function groupNorm(g: GraphBuilder, x: string, name: string, channels: number, groups: number, epsilon: number): string {
  if (channels % groups !== 0) throw new Error(`${name}: ${channels} channels do not split into ${groups} groups`);
  const originalShape = g.op('Shape', [x]);
  const grouped = g.op('Reshape', [g.toFloat32(x), g.int64Constant(`${name}.group_shape`, [0, groups, -1])]);
  const unitScale = g.floatConstant(`${name}.instance_scale`, [groups], new Float32Array(groups).fill(1), 'float32');
  const zeroShift = g.floatConstant(`${name}.instance_shift`, [groups], new Float32Array(groups), 'float32');
  const normalized = g.op('InstanceNormalization', [grouped, unitScale, zeroShift], [floatAttr('epsilon', epsilon)]);
  const restored = g.fromFloat32(g.op('Reshape', [normalized, originalShape]));
  const scale = g.parameter(`${name}.weight`, [channels], { kind: 'norm-scale' }, { graphDims: [channels, 1, 1] });
  const shift = g.parameter(`${name}.bias`, [channels], { kind: 'norm-shift' }, { graphDims: [channels, 1, 1] });
  return g.op('Add', [g.op('Mul', [restored, scale]), shift]);
}

/** nn.LayerNorm over the last axis; `output` names the result (for a graph output). */
export function layerNorm(g: GraphBuilder, x: string, name: string, features: number, epsilon: number, output?: string): string {
  const scale = g.parameter(`${name}.weight`, [features], { kind: 'norm-scale' });
  const shift = g.parameter(`${name}.bias`, [features], { kind: 'norm-shift' });
  return g.op('LayerNormalization', [x, scale, shift], [intAttr('axis', -1), floatAttr('epsilon', epsilon)], output);
}

export function silu(g: GraphBuilder, x: string): string {
  return g.op('Mul', [x, g.op('Sigmoid', [x])]);
}

/** torch's exact GELU: x · ½(1 + erf(x/√2)). */
export function gelu(g: GraphBuilder, x: string): string {
  const erf = g.op('Erf', [g.op('Div', [x, g.scalar('gelu.sqrt2', Math.SQRT2)])]);
  return g.op('Mul', [g.op('Mul', [x, g.op('Add', [erf, g.scalar('gelu.one', 1)])]), g.scalar('gelu.half', 0.5)]);
}

/** CLIP's quick GELU: x · sigmoid(1.702 x). */
export function quickGelu(g: GraphBuilder, x: string): string {
  return g.op('Mul', [x, g.op('Sigmoid', [g.op('Mul', [x, g.scalar('quick_gelu.factor', 1.702)])])]);
}

export interface AttentionOptions {
  /** Width of the query tokens and of the attention output. */
  channels: number;
  /** Width of the key/value tokens (the text embedding width for cross-attention). */
  contextChannels: number;
  heads: number;
  /** Sub-module names of the four projections, e.g. to_q/to_k/to_v/to_out.0 (diffusers) or q_proj/…/out_proj (CLIP). */
  projections: { query: string; key: string; value: string; out: string };
  /** Whether q/k/v have biases (CLIP's and the VAE's do, the U-Net's do not); the output projection always has one. */
  projectionBias: boolean;
  /** Added to the scores before Softmax, e.g. a causal mask of 0 / large negative values (never fused). */
  additiveMask?: string;
  /** Scores and Softmax in float32 in an fp16 graph (diffusers' upcast_attention / upcast_softmax). */
  upcast?: boolean;
}

/** diffusers' Attention (and CLIP's): multi-head attention of `query` tokens [batch, n, channels] over `context` tokens. */
export function attention(g: GraphBuilder, query: string, context: string, name: string, options: AttentionOptions): string {
  const { channels, contextChannels, heads, projections, projectionBias, additiveMask } = options;
  if (channels % heads !== 0) throw new Error(`${name}: ${channels} channels do not split into ${heads} heads`);
  const q = linear(g, query, `${name}.${projections.query}`, channels, channels, projectionBias);
  const k = linear(g, context, `${name}.${projections.key}`, contextChannels, channels, projectionBias);
  const v = linear(g, context, `${name}.${projections.value}`, contextChannels, channels, projectionBias);
  const attended =
    g.attention === 'fused' && !additiveMask
      ? g.op('MultiHeadAttention', [q, k, v], [intAttr('num_heads', heads)], undefined, MICROSOFT_DOMAIN)
      : scaledDotProductAttention(g, q, k, v, name, options);
  return linear(g, attended, `${name}.${projections.out}`, channels, channels);
}

/** softmax(q·kᵀ/√d + mask)·v per head, as torch exports it; [batch, tokens, channels] in and out. */
function scaledDotProductAttention(g: GraphBuilder, q: string, k: string, v: string, name: string, options: AttentionOptions): string {
  const { channels, heads, additiveMask, upcast } = options;
  const headSize = channels / heads;
  const headShape = g.int64Constant(`${name}.head_shape`, [0, 0, heads, headSize]);
  const splitHeads = (x: string, perm: number[]) => g.op('Transpose', [g.op('Reshape', [x, headShape])], [intsAttr('perm', perm)]);
  const inScoreType = (x: string) => (upcast ? g.toFloat32(x) : x);

  const scoreType = upcast ? 'float32' : g.floatType;
  const product = g.op('MatMul', [inScoreType(splitHeads(q, [0, 2, 1, 3])), inScoreType(splitHeads(k, [0, 2, 3, 1]))]);
  let scores = g.op('Mul', [product, g.scalar(`${name}.scale`, 1 / Math.sqrt(headSize), scoreType)]);
  if (additiveMask) scores = g.op('Add', [scores, upcast ? g.toFloat32(additiveMask) : additiveMask]);
  let weights = g.op('Softmax', [scores], [intAttr('axis', -1)]);
  if (upcast) weights = g.fromFloat32(weights);
  const merged = g.op('Transpose', [g.op('MatMul', [weights, splitHeads(v, [0, 2, 1, 3])])], [intsAttr('perm', [0, 2, 1, 3])]);
  return g.op('Reshape', [merged, g.int64Constant(`${name}.merged_shape`, [0, 0, channels])]);
}

export interface NormSettings {
  groups: number;
  epsilon: number;
}

/**
 * diffusers' ResnetBlock2D: norm → SiLU → conv (+ the projected time embedding) → norm → SiLU → conv, plus the
 * input (through a 1×1 conv when the width changes). `activatedTime` is SiLU(time embedding), shared by every block.
 */
export function resnetBlock(
  g: GraphBuilder,
  x: string,
  name: string,
  inChannels: number,
  outChannels: number,
  norm: NormSettings,
  activatedTime?: { value: string; channels: number },
): string {
  let h = conv2d(g, silu(g, groupNorm(g, x, `${name}.norm1`, inChannels, norm.groups, norm.epsilon)), `${name}.conv1`, inChannels, outChannels);
  if (activatedTime) {
    const projected = linear(g, activatedTime.value, `${name}.time_emb_proj`, activatedTime.channels, outChannels);
    h = g.op('Add', [h, g.op('Unsqueeze', [projected, g.int64Constant(`${name}.time_axes`, [2, 3])])]);
  }
  h = conv2d(g, silu(g, groupNorm(g, h, `${name}.norm2`, outChannels, norm.groups, norm.epsilon)), `${name}.conv2`, outChannels, outChannels);
  const shortcut = inChannels === outChannels ? x : conv2d(g, x, `${name}.conv_shortcut`, inChannels, outChannels, { kernel: 1 });
  return g.op('Add', [shortcut, h]);
}

/** Nearest-neighbour ×2 (the Resize diffusers' Upsample2D exports to). */
export function upsampleNearest2x(g: GraphBuilder, x: string, name: string): string {
  const scales = g.floatConstant(`${name}.scales`, [4], [1, 1, 2, 2], 'float32');
  return g.op('Resize', [x, '', scales], [
    stringAttr('mode', 'nearest'),
    stringAttr('coordinate_transformation_mode', 'asymmetric'),
    stringAttr('nearest_mode', 'floor'),
  ]);
}

/** [batch, channels, height, width] → [batch, height·width, channels]. */
export function imageToTokens(g: GraphBuilder, x: string, name: string): string {
  const flat = g.op('Reshape', [x, g.int64Constant(`${name}.token_shape`, [0, 0, -1])]);
  return g.op('Transpose', [flat], [intsAttr('perm', [0, 2, 1])]);
}

/** The inverse of imageToTokens, back to the shape of `like`. */
export function tokensToImage(g: GraphBuilder, tokens: string, like: string): string {
  return g.op('Reshape', [g.op('Transpose', [tokens], [intsAttr('perm', [0, 2, 1])]), g.op('Shape', [like])]);
}
