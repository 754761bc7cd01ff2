import { GraphBuilder, type ModelProto, type Precision, intAttr, intsAttr } from './graph.ts';
import { attention, conv2d, groupNorm, layerNorm, linear, resnetBlock, silu, upsampleNearest2x } from './layers.ts';
import { TEXT_ENCODER } from './text-encoder.ts';

export const UNET = {
  inChannels: 4,
  outChannels: 4,
  /** One entry per resolution: one down level means two entries, as in diffusers' config. */
  blockOutChannels: [32, 64],
  timeEmbeddingChannels: 128,
  groups: 8,
  attentionHeads: 2,
  crossAttentionDim: TEXT_ENCODER.hiddenSize,
  /** Latent size the model is "trained" at: 32 → 256×256 images. */
  sampleSize: 32,
} as const;

const NORM = { groups: UNET.groups, epsilon: 1e-5 };

export type TimestepType = 'float32' | 'float16' | 'int64';
export type TimestepShape = 'scalar' | 'one' | 'batch';

export interface UnetOptions {
  precision: Precision;
  random: () => number;
  timestepType: TimestepType;
  timestepShape: TimestepShape;
}

const timestepDims: Record<TimestepShape, Array<number | string>> = { scalar: [], one: [1], batch: ['batch'] };

/**
 * A two-resolution UNet2DConditionModel in miniature: conv_in, a sinusoidal timestep embedding MLP feeding every
 * resnet block, one resnet + stride-2 downsample, a resnet + cross-attention block over the text at half
 * resolution, a nearest ×2 upsample with a skip concat and a resnet, then norm → SiLU → conv_out.
 */
export function buildUnet({ precision, random, timestepType, timestepShape }: UnetOptions): ModelProto {
  const [outer, inner] = UNET.blockOutChannels;
  const g = new GraphBuilder(precision, random);

  const timeEmbedding = { value: timestepEmbedding(g), channels: UNET.timeEmbeddingChannels };

  const stem = conv2d(g, 'sample', UNET.inChannels, outer, 'conv_in');
  const skip = resnetBlock(g, stem, outer, outer, 'down_blocks.0.resnets.0', NORM, timeEmbedding);
  const downsampled = conv2d(g, skip, outer, outer, 'down_blocks.0.downsamplers.0.conv', { stride: 2 });

  const middle = resnetBlock(g, downsampled, outer, inner, 'mid_block.resnets.0', NORM, timeEmbedding);
  const attended = crossAttentionBlock(g, middle, inner, 'mid_block.attentions.0');

  const upsampled = conv2d(g, upsampleNearest2x(g, attended, 'up_blocks.0.upsamplers.0'), inner, inner, 'up_blocks.0.upsamplers.0.conv');
  const joined = g.op('Concat', [upsampled, skip], [intAttr('axis', 1)]);
  const decoded = resnetBlock(g, joined, inner + outer, outer, 'up_blocks.0.resnets.0', NORM, timeEmbedding);

  const finalNorm = groupNorm(g, decoded, outer, NORM.groups, NORM.epsilon, 'conv_norm_out');
  conv2d(g, silu(g, finalNorm), outer, UNET.outChannels, 'conv_out', { output: 'out_sample' });

  const latent = ['batch', 'channels', 'height', 'width'];
  return g.toModel(
    'unet',
    [
      { name: 'sample', type: g.floatType, shape: latent },
      { name: 'timestep', type: timestepType, shape: timestepDims[timestepShape] },
      { name: 'encoder_hidden_states', type: g.floatType, shape: ['batch', 'sequence', UNET.crossAttentionDim] },
    ],
    [{ name: 'out_sample', type: g.floatType, shape: latent }],
  );
}

/**
 * diffusers' Timesteps(flip_sin_to_cos=True, downscale_freq_shift=0) then TimestepEmbedding (Linear → SiLU →
 * Linear). Computed in float32 whatever the model precision: t·freq reaches ~1000 rad, where float16 would lose
 * the phase. Whatever the timestep's shape ([], [1] or [batch]) the result is [n, channels] with n = 1 or batch,
 * which broadcasts over the batch.
 */
function timestepEmbedding(g: GraphBuilder): string {
  const channels = UNET.blockOutChannels[0];
  const half = channels / 2;
  const frequencies = Float32Array.from({ length: half }, (_, i) => Math.exp((-Math.log(10000) * i) / half));
  const steps = g.cast(g.op('Reshape', ['timestep', g.int64Constant('time_proj.flat_shape', [-1, 1])]), 'float32');
  const phases = g.op('Mul', [steps, g.floatConstant('time_proj.frequencies', [1, half], frequencies, 'float32')]);
  let sinusoid = g.op('Concat', [g.op('Cos', [phases]), g.op('Sin', [phases])], [intAttr('axis', 1)]);
  if (g.floatType !== 'float32') sinusoid = g.cast(sinusoid, g.floatType);
  const hidden = silu(g, linear(g, sinusoid, channels, UNET.timeEmbeddingChannels, 'time_embedding.linear_1'));
  return linear(g, hidden, UNET.timeEmbeddingChannels, UNET.timeEmbeddingChannels, 'time_embedding.linear_2');
}

/** Transformer2DModel reduced to its cross-attention: image tokens attend over encoder_hidden_states. */
function crossAttentionBlock(g: GraphBuilder, x: string, channels: number, name: string): string {
  const normed = groupNorm(g, x, channels, NORM.groups, 1e-6, `${name}.norm`);
  const tokens = g.op('Transpose', [g.op('Reshape', [normed, g.int64Constant(`${name}.token_shape`, [0, 0, -1])])], [
    intsAttr('perm', [0, 2, 1]),
  ]);
  const projected = linear(g, tokens, channels, channels, `${name}.proj_in`);
  const attended = attention(g, layerNorm(g, projected, channels, `${name}.transformer_blocks.0.norm2`), 'encoder_hidden_states', `${name}.transformer_blocks.0.attn2`, {
    channels,
    contextChannels: UNET.crossAttentionDim,
    heads: UNET.attentionHeads,
    projectionBias: false,
  });
  const updated = linear(g, g.op('Add', [projected, attended]), channels, channels, `${name}.proj_out`);
  const image = g.op('Reshape', [g.op('Transpose', [updated], [intsAttr('perm', [0, 2, 1])]), g.op('Shape', [x])]);
  return g.op('Add', [x, image]);
}
