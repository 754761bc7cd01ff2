import type { AutoencoderKLConfig, AutoencoderTinyConfig, VaeConfig } from './configs.ts';
import { attention, conv2d, groupNorm, imageToTokens, resnetBlock, silu, tokensToImage, upsampleNearest2x } from './layers.ts';
import type { GraphBuilder, ModelProto } from './onnx-graph.ts';

const EPSILON = 1e-6;
/** diffusers clamps the encoder's log-variance to this range before sampling. */
const LOGVAR_RANGE = [-30, 20] as const;

/** The VAE decoder of either VAE class: latent_sample → sample (RGB in about [-1, 1]), as diffusers' exports name them. */
export function buildVaeDecoder(g: GraphBuilder, config: VaeConfig): ModelProto {
  return config._class_name === 'AutoencoderTiny' ? buildTinyDecoder(g, config) : buildKLDecoder(g, config);
}

/**
 * The VAE encoder: sample (RGB in [-1, 1]) → for AutoencoderKL, `latent_mean` and `latent_logvar` (diffusers'
 * latent_dist, the log-variance clamped as diffusers does) so the pipeline samples with its own generator; for
 * AutoencoderTiny, whose encoding is deterministic, `latents`.
 */
export function buildVaeEncoder(g: GraphBuilder, config: VaeConfig): ModelProto {
  return config._class_name === 'AutoencoderTiny' ? buildTinyEncoder(g, config) : buildKLEncoder(g, config);
}

/** Dim names as diffusers' ONNX converter gives them (equal names would tell onnxruntime the sizes are equal). */
function imageShape(channels: number) {
  return ['batch', channels, 'image_height', 'image_width'];
}

function latentShape() {
  return ['batch', 'channels', 'height', 'width'];
}

/**
 * AutoencoderKL's decode: post_quant_conv; conv_in; mid block (resnet, single-head self-attention over every
 * latent pixel, resnet); up blocks of layers_per_block + 1 resnets with nearest ×2 + conv between them; norm →
 * SiLU → conv_out.
 */
function buildKLDecoder(g: GraphBuilder, config: AutoencoderKLConfig): ModelProto {
  const widths = [...config.block_out_channels].reverse();
  const norm = { groups: config.norm_num_groups, epsilon: EPSILON };
  const latents = config.latent_channels;

  let h = 'latent_sample';
  if (config.use_post_quant_conv) h = conv2d(g, h, 'post_quant_conv', latents, latents, { kernel: 1 });
  h = conv2d(g, h, 'decoder.conv_in', latents, widths[0]);
  h = midBlock(g, h, 'decoder.mid_block', widths[0], config);

  let width = widths[0];
  widths.forEach((blockWidth, block) => {
    const name = `decoder.up_blocks.${block}`;
    for (let layer = 0; layer <= config.layers_per_block; layer++) {
      h = resnetBlock(g, h, `${name}.resnets.${layer}`, width, blockWidth, norm);
      width = blockWidth;
    }
    if (block < widths.length - 1) h = conv2d(g, upsampleNearest2x(g, h, `${name}.upsamplers.0`), `${name}.upsamplers.0.conv`, width, width);
  });
  const out = silu(g, groupNorm(g, h, 'decoder.conv_norm_out', width, norm.groups, EPSILON));
  conv2d(g, out, 'decoder.conv_out', width, config.out_channels, { output: 'sample' });

  return g.toModel(
    'vae_decoder',
    [{ name: 'latent_sample', type: g.floatType, shape: latentShape() }],
    [{ name: 'sample', type: g.floatType, shape: imageShape(config.out_channels) }],
  );
}

/**
 * AutoencoderKL's encode: conv_in; down blocks of resnets with a stride-2 conv (padded on the bottom and right
 * only, as diffusers pads) between them; the mid block; norm → SiLU → conv_out to twice the latent channels;
 * quant_conv; the halves are the mean and the log-variance.
 */
function buildKLEncoder(g: GraphBuilder, config: AutoencoderKLConfig): ModelProto {
  const widths = config.block_out_channels;
  const norm = { groups: config.norm_num_groups, epsilon: EPSILON };
  const moments = 2 * config.latent_channels;

  let h = conv2d(g, 'sample', 'encoder.conv_in', config.in_channels, widths[0]);
  let width = widths[0];
  widths.forEach((blockWidth, block) => {
    const name = `encoder.down_blocks.${block}`;
    for (let layer = 0; layer < config.layers_per_block; layer++) {
      h = resnetBlock(g, h, `${name}.resnets.${layer}`, width, blockWidth, norm);
      width = blockWidth;
    }
    if (block < widths.length - 1) h = conv2d(g, h, `${name}.downsamplers.0.conv`, width, width, { stride: 2, pads: [0, 0, 1, 1] });
  });
  h = midBlock(g, h, 'encoder.mid_block', width, config);
  h = conv2d(g, silu(g, groupNorm(g, h, 'encoder.conv_norm_out', width, norm.groups, EPSILON)), 'encoder.conv_out', width, moments);
  if (config.use_quant_conv) h = conv2d(g, h, 'quant_conv', moments, moments, { kernel: 1 });

  const channelAxis = g.int64Constant('moments_axis', [1]);
  const half = (start: number, label: string) =>
    g.op('Slice', [h, g.int64Constant(`${label}_start`, [start]), g.int64Constant(`${label}_end`, [start + config.latent_channels]), channelAxis]);
  g.op('Identity', [half(0, 'mean')], [], 'latent_mean');
  const [low, high] = LOGVAR_RANGE.map((bound, i) => g.scalar(`logvar_${i ? 'max' : 'min'}`, bound));
  g.op('Clip', [half(config.latent_channels, 'logvar'), low, high], [], 'latent_logvar');
  return g.toModel(
    'vae_encoder',
    [{ name: 'sample', type: g.floatType, shape: imageShape(config.in_channels) }],
    [
      { name: 'latent_mean', type: g.floatType, shape: latentShape() },
      { name: 'latent_logvar', type: g.floatType, shape: latentShape() },
    ],
  );
}

/** UNetMidBlock2D of the VAE: resnet, (single-head self-attention,) resnet. */
function midBlock(g: GraphBuilder, x: string, name: string, width: number, config: AutoencoderKLConfig): string {
  const norm = { groups: config.norm_num_groups, epsilon: EPSILON };
  let h = resnetBlock(g, x, `${name}.resnets.0`, width, width, norm);
  if (config.mid_block_add_attention) h = selfAttention(g, h, `${name}.attentions.0`, width, config.norm_num_groups);
  return resnetBlock(g, h, `${name}.resnets.1`, width, width, norm);
}

/** diffusers' Attention as the VAE uses it: GroupNorm, one head over all pixels, q/k/v/out with biases, residual. */
function selfAttention(g: GraphBuilder, x: string, name: string, channels: number, groups: number): string {
  const tokens = imageToTokens(g, groupNorm(g, x, `${name}.group_norm`, channels, groups, EPSILON), name);
  const attended = attention(g, tokens, tokens, name, {
    channels,
    contextChannels: channels,
    heads: 1,
    projections: { query: 'to_q', key: 'to_k', value: 'to_v', out: 'to_out.0' },
    projectionBias: true,
    upcast: true,
  });
  return g.op('Add', [tokensToImage(g, attended, x), x]);
}

/** Numbers the entries of an nn.Sequential as they are added, for their state-dict names. */
class Sequential {
  private next = 0;
  constructor(private readonly prefix: string) {}

  /** The name of the next entry (a layer without parameters still takes a number). */
  take(): string {
    return `${this.prefix}.${this.next++}`;
  }
}

/** AutoencoderTinyBlock: three 3×3 convs with ReLUs, plus the input (1×1 conv when the width changes), ReLU. */
function tinyBlock(g: GraphBuilder, x: string, name: string, inChannels: number, outChannels: number): string {
  let h = g.op('Relu', [conv2d(g, x, `${name}.conv.0`, inChannels, outChannels)]);
  h = g.op('Relu', [conv2d(g, h, `${name}.conv.2`, outChannels, outChannels)]);
  h = conv2d(g, h, `${name}.conv.4`, outChannels, outChannels);
  const skip = inChannels === outChannels ? x : conv2d(g, x, `${name}.skip`, inChannels, outChannels, { kernel: 1, bias: false });
  return g.op('Relu', [g.op('Add', [h, skip])]);
}

/**
 * DecoderTiny: tanh(x/3)·3; conv + ReLU; per block its tiny blocks, then (but for the last) nearest ×2 and a
 * bias-free conv; the last conv to RGB; the [0, 1] result mapped to [-1, 1] as AutoencoderTiny.decode returns it.
 */
function buildTinyDecoder(g: GraphBuilder, config: AutoencoderTinyConfig): ModelProto {
  const layers = new Sequential('decoder.layers');
  const widths = config.decoder_block_out_channels;
  const clamped = g.op('Mul', [g.op('Tanh', [g.op('Div', ['latent_sample', g.scalar('decoder.clamp', 3)])]), g.scalar('decoder.clamp_back', 3)]);
  let h = g.op('Relu', [conv2d(g, clamped, layers.take(), config.latent_channels, widths[0])]);
  layers.take();
  config.num_decoder_blocks.forEach((blocks, index) => {
    const last = index === widths.length - 1;
    for (let block = 0; block < blocks; block++) h = tinyBlock(g, h, layers.take(), widths[index], widths[index]);
    if (!last) {
      h = upsampleNearest2x(g, h, layers.take());
    }
    h = conv2d(g, h, layers.take(), widths[index], last ? config.out_channels : widths[index], { bias: last });
  });
  g.op('Sub', [g.op('Mul', [h, g.scalar('decoder.to_signed_scale', 2)]), g.scalar('decoder.to_signed_shift', 1)], [], 'sample');
  return g.toModel(
    'vae_decoder',
    [{ name: 'latent_sample', type: g.floatType, shape: latentShape() }],
    [{ name: 'sample', type: g.floatType, shape: imageShape(config.out_channels) }],
  );
}

/** EncoderTiny: the [-1, 1] image mapped to [0, 1]; per block a conv (stride 2 and bias-free after the first) and tiny blocks; conv to the latents. */
function buildTinyEncoder(g: GraphBuilder, config: AutoencoderTinyConfig): ModelProto {
  const layers = new Sequential('encoder.layers');
  const widths = config.encoder_block_out_channels;
  let h = g.op('Div', [g.op('Add', ['sample', g.scalar('encoder.to_unsigned_shift', 1)]), g.scalar('encoder.to_unsigned_scale', 2)]);
  config.num_encoder_blocks.forEach((blocks, index) => {
    h =
      index === 0
        ? conv2d(g, h, layers.take(), config.in_channels, widths[0])
        : conv2d(g, h, layers.take(), widths[index], widths[index], { stride: 2, bias: false });
    for (let block = 0; block < blocks; block++) h = tinyBlock(g, h, layers.take(), widths[index], widths[index]);
  });
  conv2d(g, h, layers.take(), widths[widths.length - 1], config.latent_channels, { output: 'latents' });
  return g.toModel(
    'vae_encoder',
    [{ name: 'sample', type: g.floatType, shape: imageShape(config.in_channels) }],
    [{ name: 'latents', type: g.floatType, shape: latentShape() }],
  );
}
