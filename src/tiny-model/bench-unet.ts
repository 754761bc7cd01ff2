import { type GraphBuilder, type ModelProto, intAttr, intsAttr } from './graph.ts';
import { attention, conv2d, groupNorm, layerNorm, linear, resnetBlock, silu, upsampleNearest2x } from './layers.ts';

/** The widths of a UNet2DConditionModel with SD 1.x's block layout (cross-attention on every level but the lowest). */
export interface BenchUnetDims {
  /** One entry per resolution, highest first. */
  blockOutChannels: number[];
  layersPerBlock: number;
  /** Attention heads (SD 1.x's config calls this attention_head_dim). */
  heads: number;
  crossAttentionDim: number;
  groups: number;
}

/** runwayml/stable-diffusion-v1-5's unet/config.json: 859,520,964 parameters. */
export const SD15_UNET: BenchUnetDims = {
  blockOutChannels: [320, 640, 1280, 1280],
  layersPerBlock: 2,
  heads: 8,
  crossAttentionDim: 768,
  groups: 32,
};

const LATENT_CHANNELS = 4;
const RESNET_EPSILON = 1e-5;
const TRANSFORMER_NORM_EPSILON = 1e-6;

/**
 * SD 1.5's U-Net as diffusers builds it and torch exports it: conv_in; CrossAttnDownBlock2D × (levels − 1) and a
 * DownBlock2D, each of `layersPerBlock` resnets (+ a spatial transformer) and a stride-2 conv; the mid block
 * (resnet, transformer, resnet); UpBlock2D then CrossAttnUpBlock2D × (levels − 1), each of `layersPerBlock` + 1
 * resnets over the concatenated skips and a nearest ×2 + conv; norm → SiLU → conv_out.
 */
export function buildBenchUnet(g: GraphBuilder, dims: BenchUnetDims): ModelProto {
  const channels = dims.blockOutChannels;
  const levels = channels.length;
  const norm = { groups: dims.groups, epsilon: RESNET_EPSILON };
  const time = { value: timestepEmbedding(g, channels[0]), channels: 4 * channels[0] };

  let h = conv2d(g, 'sample', LATENT_CHANNELS, channels[0], 'conv_in');
  let width = channels[0];
  const skips: Array<{ value: string; channels: number }> = [{ value: h, channels: width }];

  for (let level = 0; level < levels; level++) {
    const hasAttention = level < levels - 1;
    for (let layer = 0; layer < dims.layersPerBlock; layer++) {
      const name = `down_blocks.${level}`;
      h = resnetBlock(g, h, width, channels[level], `${name}.resnets.${layer}`, norm, time);
      width = channels[level];
      if (hasAttention) h = spatialTransformer(g, h, width, `${name}.attentions.${layer}`, dims);
      skips.push({ value: h, channels: width });
    }
    if (level < levels - 1) {
      h = conv2d(g, h, width, width, `down_blocks.${level}.downsamplers.0.conv`, { stride: 2 });
      skips.push({ value: h, channels: width });
    }
  }

  h = resnetBlock(g, h, width, width, 'mid_block.resnets.0', norm, time);
  h = spatialTransformer(g, h, width, 'mid_block.attentions.0', dims);
  h = resnetBlock(g, h, width, width, 'mid_block.resnets.1', norm, time);

  for (let block = 0; block < levels; block++) {
    const level = levels - 1 - block;
    const hasAttention = block > 0;
    const name = `up_blocks.${block}`;
    for (let layer = 0; layer <= dims.layersPerBlock; layer++) {
      const skip = skips.pop()!;
      const joined = g.op('Concat', [h, skip.value], [intAttr('axis', 1)]);
      h = resnetBlock(g, joined, width + skip.channels, channels[level], `${name}.resnets.${layer}`, norm, time);
      width = channels[level];
      if (hasAttention) h = spatialTransformer(g, h, width, `${name}.attentions.${layer}`, dims);
    }
    if (level > 0) h = conv2d(g, upsampleNearest2x(g, h, `${name}.upsamplers.0`), width, width, `${name}.upsamplers.0.conv`);
  }

  const out = silu(g, groupNorm(g, h, width, dims.groups, RESNET_EPSILON, 'conv_norm_out'));
  conv2d(g, out, width, LATENT_CHANNELS, 'conv_out', { output: 'out_sample' });

  const latent = ['batch', LATENT_CHANNELS, 'height', 'width'];
  return g.toModel(
    'unet',
    [
      { name: 'sample', type: g.floatType, shape: latent },
      { name: 'timestep', type: 'float32', shape: ['batch'] },
      { name: 'encoder_hidden_states', type: g.floatType, shape: ['batch', 'sequence', dims.crossAttentionDim] },
    ],
    [{ name: 'out_sample', type: g.floatType, shape: latent }],
  );
}

/** Timesteps(flip_sin_to_cos=True, shift 0) → Linear → SiLU → Linear, the sinusoid in float32 (phases reach ~1000 rad). */
function timestepEmbedding(g: GraphBuilder, channels: number): string {
  const half = channels / 2;
  const frequencies = Float32Array.from({ length: half }, (_, i) => Math.exp((-Math.log(10000) * i) / half));
  const steps = g.op('Reshape', ['timestep', g.int64Constant('time_proj.column', [-1, 1])]);
  const phases = g.op('Mul', [steps, g.floatConstant('time_proj.frequencies', [1, half], frequencies, 'float32')]);
  let sinusoid = g.op('Concat', [g.op('Cos', [phases]), g.op('Sin', [phases])], [intAttr('axis', 1)]);
  if (g.floatType !== 'float32') sinusoid = g.cast(sinusoid, g.floatType);
  const hidden = silu(g, linear(g, sinusoid, channels, 4 * channels, 'time_embedding.linear_1'));
  return linear(g, hidden, 4 * channels, 4 * channels, 'time_embedding.linear_2');
}

/**
 * SD 1.x's Transformer2DModel: GroupNorm, 1×1 proj_in, one BasicTransformerBlock (self-attention, cross-attention
 * over the text, GEGLU feed-forward, each pre-LayerNorm and residual), 1×1 proj_out, plus the input.
 */
function spatialTransformer(g: GraphBuilder, x: string, channels: number, name: string, dims: BenchUnetDims): string {
  const projected = conv2d(g, groupNorm(g, x, channels, dims.groups, TRANSFORMER_NORM_EPSILON, `${name}.norm`), channels, channels, `${name}.proj_in`, {
    kernel: 1,
  });
  let tokens = g.op('Transpose', [g.op('Reshape', [projected, g.int64Constant(`${name}.token_shape`, [0, 0, -1])])], [intsAttr('perm', [0, 2, 1])]);

  const block = `${name}.transformer_blocks.0`;
  const heads = dims.heads;
  const selfInput = layerNorm(g, tokens, channels, `${block}.norm1`);
  tokens = g.op('Add', [tokens, attention(g, selfInput, selfInput, `${block}.attn1`, { channels, contextChannels: channels, heads, projectionBias: false })]);
  const crossInput = layerNorm(g, tokens, channels, `${block}.norm2`);
  const cross = attention(g, crossInput, 'encoder_hidden_states', `${block}.attn2`, {
    channels,
    contextChannels: dims.crossAttentionDim,
    heads,
    projectionBias: false,
  });
  tokens = g.op('Add', [tokens, cross]);
  tokens = g.op('Add', [tokens, gegluFeedForward(g, layerNorm(g, tokens, channels, `${block}.norm3`), channels, `${block}.ff`)]);

  const image = g.op('Reshape', [g.op('Transpose', [tokens], [intsAttr('perm', [0, 2, 1])]), g.op('Shape', [x])]);
  return g.op('Add', [conv2d(g, image, channels, channels, `${name}.proj_out`, { kernel: 1 }), x]);
}

/** FeedForward with GEGLU: Linear to 2 × 4C, value · GELU(gate) (exact GELU, as torch exports it: erf), Linear back. */
function gegluFeedForward(g: GraphBuilder, x: string, channels: number, name: string): string {
  const inner = 4 * channels;
  const projected = linear(g, x, channels, 2 * inner, `${name}.net.0.proj`);
  const lastAxis = g.int64Constant(`${name}.split_axis`, [-1]);
  const half = (start: number, end: number, label: string) =>
    g.op('Slice', [projected, g.int64Constant(`${name}.${label}_start`, [start]), g.int64Constant(`${name}.${label}_end`, [end]), lastAxis]);
  const value = half(0, inner, 'value');
  const gate = half(inner, 2 * inner, 'gate');
  const erf = g.op('Erf', [g.op('Div', [gate, g.scalar(`${name}.sqrt2`, Math.SQRT2)])]);
  const gelu = g.op('Mul', [g.op('Mul', [gate, g.op('Add', [erf, g.scalar(`${name}.one`, 1)])]), g.scalar(`${name}.half`, 0.5)]);
  return linear(g, g.op('Mul', [value, gelu]), inner, channels, `${name}.net.2`);
}
