import { type UNetConfig, unetHeads, unetTransformerLayers } from './configs.ts';
import { attention, conv2d, gelu, groupNorm, imageToTokens, layerNorm, linear, resnetBlock, silu, tokensToImage, upsampleNearest2x } from './layers.ts';
import { type Dim, type GraphBuilder, type ModelProto, type ValueSpec, intAttr } from './onnx-graph.ts';

export type TimestepType = 'float32' | 'float16' | 'int64';
/** [] (Optimum), [1], or [batch] (diffusers' converter). */
export type TimestepShape = 'scalar' | 'one' | 'batch';

export interface UNetOptions {
  timestepType: TimestepType;
  timestepShape: TimestepShape;
}

const TRANSFORMER_NORM_EPSILON = 1e-6;
const LAYER_NORM_EPSILON = 1e-5;
const timestepDims: Record<TimestepShape, Dim[]> = { scalar: [], one: [1], batch: ['batch'] };

interface Skip {
  value: string;
  channels: number;
}

/**
 * diffusers' UNet2DConditionModel: conv_in; down blocks of resnets (+ spatial transformers over the text) and
 * stride-2 convs, each output kept as a skip; the mid block; up blocks of resnets over [h, skip] (+ transformers)
 * and nearest ×2 + conv; norm → SiLU → conv_out. The time embedding (plus LCM's guidance embedding, or SDXL's
 * text_time embedding) feeds every resnet. Inputs and output are named as in diffusers' ONNX exports.
 */
export function buildUNet(g: GraphBuilder, config: UNetConfig, options: UNetOptions): ModelProto {
  const channels = config.block_out_channels;
  const levels = channels.length;
  const heads = unetHeads(config);
  const transformerLayers = unetTransformerLayers(config);
  const upTransformerLayers = config.reverse_transformer_layers_per_block ?? [...transformerLayers].reverse();
  const norm = { groups: config.norm_num_groups, epsilon: config.norm_eps };
  const inputs: ValueSpec[] = [];

  const time = { value: silu(g, timeEmbedding(g, config, inputs)), channels: 4 * channels[0] };
  const transformer = (x: string, width: number, name: string, blockHeads: number, layers: number) =>
    spatialTransformer(g, x, name, { channels: width, heads: blockHeads, layers, config });

  let h = conv2d(g, 'sample', 'conv_in', config.in_channels, channels[0], { kernel: config.conv_in_kernel });
  let width = channels[0];
  const skips: Skip[] = [{ value: h, channels: width }];

  config.down_block_types.forEach((type, level) => {
    const name = `down_blocks.${level}`;
    for (let layer = 0; layer < config.layers_per_block; layer++) {
      h = resnetBlock(g, h, `${name}.resnets.${layer}`, width, channels[level], norm, time);
      width = channels[level];
      if (type === 'CrossAttnDownBlock2D') h = transformer(h, width, `${name}.attentions.${layer}`, heads[level], transformerLayers[level]);
      skips.push({ value: h, channels: width });
    }
    if (level < levels - 1) {
      const pad = config.downsample_padding;
      h = conv2d(g, h, `${name}.downsamplers.0.conv`, width, width, { stride: 2, pads: [pad, pad, pad, pad] });
      skips.push({ value: h, channels: width });
    }
  });

  h = resnetBlock(g, h, 'mid_block.resnets.0', width, width, norm, time);
  h = transformer(h, width, 'mid_block.attentions.0', heads[levels - 1], transformerLayers[levels - 1]);
  h = resnetBlock(g, h, 'mid_block.resnets.1', width, width, norm, time);

  const upHeads = [...heads].reverse();
  const upChannels = [...channels].reverse();
  config.up_block_types.forEach((type, block) => {
    const name = `up_blocks.${block}`;
    for (let layer = 0; layer <= config.layers_per_block; layer++) {
      const skip = skips.pop()!;
      h = g.op('Concat', [h, skip.value], [intAttr('axis', 1)]);
      h = resnetBlock(g, h, `${name}.resnets.${layer}`, width + skip.channels, upChannels[block], norm, time);
      width = upChannels[block];
      if (type === 'CrossAttnUpBlock2D') h = transformer(h, width, `${name}.attentions.${layer}`, upHeads[block], upTransformerLayers[block]);
    }
    if (block < levels - 1) h = conv2d(g, upsampleNearest2x(g, h, `${name}.upsamplers.0`), `${name}.upsamplers.0.conv`, width, width);
  });

  const out = silu(g, groupNorm(g, h, 'conv_norm_out', width, norm.groups, norm.epsilon));
  conv2d(g, out, 'conv_out', width, config.out_channels, { kernel: config.conv_out_kernel, output: 'out_sample' });

  return g.toModel(
    'unet',
    [
      { name: 'sample', type: g.floatType, shape: ['batch', 'channels', 'height', 'width'] },
      { name: 'timestep', type: options.timestepType, shape: timestepDims[options.timestepShape] },
      { name: 'encoder_hidden_states', type: g.floatType, shape: ['batch', 'sequence', config.cross_attention_dim] },
      ...inputs,
    ],
    [{ name: 'out_sample', type: g.floatType, shape: ['batch', config.out_channels, 'height', 'width'] }],
  );
}

/**
 * diffusers' Timesteps → TimestepEmbedding (Linear → SiLU → Linear), plus LCM's projected guidance embedding
 * (`timestep_cond`) before the first Linear and SDXL's text_time embedding after. The sinusoid is computed in
 * float32 whatever the graph's precision: t·freq reaches ~1000 rad, where float16 would lose the phase. The
 * result is [n, channels] with n = 1 or batch, which broadcasts over the batch. Extra inputs go to `inputs`.
 */
function timeEmbedding(g: GraphBuilder, config: UNetConfig, inputs: ValueSpec[]): string {
  const width = config.block_out_channels[0];
  const timeWidth = 4 * width;
  const steps = g.op('Reshape', [g.cast('timestep', 'float32'), g.int64Constant('time_proj.column', [-1, 1])]);
  let embedded = g.fromFloat32(sinusoid(g, steps, width, config, 'time_proj'));
  if (config.time_cond_proj_dim !== null) {
    inputs.push({ name: 'timestep_cond', type: g.floatType, shape: ['batch', config.time_cond_proj_dim] });
    embedded = g.op('Add', [embedded, linear(g, 'timestep_cond', 'time_embedding.cond_proj', config.time_cond_proj_dim, width, false)]);
  }
  const hidden = silu(g, linear(g, embedded, 'time_embedding.linear_1', width, timeWidth));
  let time = linear(g, hidden, 'time_embedding.linear_2', timeWidth, timeWidth);

  if (config.addition_embed_type === 'text_time') {
    const timeIdsWidth = 6;
    const idWidth = config.addition_time_embed_dim!;
    const pooledWidth = config.projection_class_embeddings_input_dim! - timeIdsWidth * idWidth;
    inputs.push({ name: 'text_embeds', type: g.floatType, shape: ['batch', pooledWidth] }, { name: 'time_ids', type: g.floatType, shape: ['batch', timeIdsWidth] });
    const ids = g.op('Reshape', [g.cast('time_ids', 'float32'), g.int64Constant('add_time_proj.column', [-1, 1])]);
    const idEmbeddings = g.op('Reshape', [sinusoid(g, ids, idWidth, config, 'add_time_proj'), g.int64Constant('add_time_proj.rows', [-1, timeIdsWidth * idWidth])]);
    const added = g.op('Concat', ['text_embeds', g.fromFloat32(idEmbeddings)], [intAttr('axis', 1)]);
    const projected = silu(g, linear(g, added, 'add_embedding.linear_1', config.projection_class_embeddings_input_dim!, timeWidth));
    time = g.op('Add', [time, linear(g, projected, 'add_embedding.linear_2', timeWidth, timeWidth)]);
  }
  return time;
}

/** diffusers' get_timestep_embedding in float32: [n, 1] values → [n, width] of sin and cos (cos first when flipped). */
function sinusoid(g: GraphBuilder, values: string, width: number, config: UNetConfig, name: string): string {
  const half = width / 2;
  const divisor = Math.fround(half - config.freq_shift);
  const frequencies = Float32Array.from({ length: half }, (_, i) => Math.exp(Math.fround(Math.fround(-Math.log(10000) * i) / divisor)));
  const phases = g.op('Mul', [values, g.floatConstant(`${name}.frequencies`, [1, half], frequencies, 'float32')]);
  const [sin, cos] = [g.op('Sin', [phases]), g.op('Cos', [phases])];
  return g.op('Concat', config.flip_sin_to_cos ? [cos, sin] : [sin, cos], [intAttr('axis', 1)]);
}

interface TransformerSettings {
  channels: number;
  heads: number;
  layers: number;
  config: UNetConfig;
}

/**
 * diffusers' Transformer2DModel over an image: GroupNorm, proj_in (1×1 conv, or Linear on the tokens with
 * use_linear_projection), BasicTransformerBlocks, proj_out, plus the input.
 */
function spatialTransformer(g: GraphBuilder, x: string, name: string, settings: TransformerSettings): string {
  const { channels, config } = settings;
  const normed = groupNorm(g, x, `${name}.norm`, channels, config.norm_num_groups, TRANSFORMER_NORM_EPSILON);
  let tokens = config.use_linear_projection
    ? linear(g, imageToTokens(g, normed, `${name}.tokens`), `${name}.proj_in`, channels, channels)
    : imageToTokens(g, conv2d(g, normed, `${name}.proj_in`, channels, channels, { kernel: 1 }), `${name}.tokens`);
  for (let layer = 0; layer < settings.layers; layer++) tokens = transformerBlock(g, tokens, `${name}.transformer_blocks.${layer}`, settings);
  const out = config.use_linear_projection
    ? tokensToImage(g, linear(g, tokens, `${name}.proj_out`, channels, channels), x)
    : conv2d(g, tokensToImage(g, tokens, x), `${name}.proj_out`, channels, channels, { kernel: 1 });
  return g.op('Add', [out, x]);
}

/** BasicTransformerBlock: self-attention, cross-attention over the text, GEGLU feed-forward; each pre-LayerNorm and residual. */
function transformerBlock(g: GraphBuilder, tokens: string, name: string, { channels, heads, config }: TransformerSettings): string {
  const projections = { query: 'to_q', key: 'to_k', value: 'to_v', out: 'to_out.0' };
  const common = { channels, heads, projections, projectionBias: false, upcast: config.upcast_attention };
  const selfInput = layerNorm(g, tokens, `${name}.norm1`, channels, LAYER_NORM_EPSILON);
  let h = g.op('Add', [tokens, attention(g, selfInput, selfInput, `${name}.attn1`, { ...common, contextChannels: channels })]);
  const crossInput = layerNorm(g, h, `${name}.norm2`, channels, LAYER_NORM_EPSILON);
  h = g.op('Add', [h, attention(g, crossInput, 'encoder_hidden_states', `${name}.attn2`, { ...common, contextChannels: config.cross_attention_dim })]);
  return g.op('Add', [h, gegluFeedForward(g, layerNorm(g, h, `${name}.norm3`, channels, LAYER_NORM_EPSILON), `${name}.ff`, channels)]);
}

/** FeedForward with GEGLU: Linear to 2 × 4C, value · GELU(gate), Linear back. */
function gegluFeedForward(g: GraphBuilder, x: string, name: string, channels: number): string {
  const inner = 4 * channels;
  const projected = linear(g, x, `${name}.net.0.proj`, channels, 2 * inner);
  const lastAxis = g.int64Constant(`${name}.split_axis`, [-1]);
  const half = (start: number, end: number, label: string) =>
    g.op('Slice', [projected, g.int64Constant(`${name}.${label}_start`, [start]), g.int64Constant(`${name}.${label}_end`, [end]), lastAxis]);
  const value = half(0, inner, 'value');
  const gate = half(inner, 2 * inner, 'gate');
  return linear(g, g.op('Mul', [value, gelu(g, gate)]), `${name}.net.2`, inner, channels);
}
