import { GraphBuilder, type ModelProto, type Precision } from './graph.ts';
import { conv2d, groupNorm, resnetBlock, silu, upsampleNearest2x } from './layers.ts';

export const VAE_DECODER = {
  latentChannels: 4,
  outChannels: 3,
  /** diffusers lists these from the highest resolution down; 4 entries = 3 upsamplings = 8× (the VAE factor). */
  blockOutChannels: [8, 16, 32, 32],
  groups: 8,
  scalingFactor: 0.18215,
} as const;

const NORM = { groups: VAE_DECODER.groups, epsilon: 1e-6 };

export interface VaeDecoderOptions {
  precision: Precision;
  random: () => number;
}

/**
 * AutoencoderKL's decoder in miniature: conv_in, a resnet block, three nearest ×2 + conv stages narrowing the
 * channels, norm → SiLU → conv_out to RGB. A final Tanh keeps the image in [-1, 1]; the real decoder has none,
 * but random weights would otherwise leave most pixels clipped.
 */
export function buildVaeDecoder({ precision, random }: VaeDecoderOptions): ModelProto {
  const widths = [...VAE_DECODER.blockOutChannels].reverse();
  const g = new GraphBuilder(precision, random);

  let h = conv2d(g, 'latent_sample', VAE_DECODER.latentChannels, widths[0], 'decoder.conv_in');
  h = resnetBlock(g, h, widths[0], widths[0], 'decoder.mid_block.resnets.0', NORM);
  for (let stage = 0; stage < widths.length - 1; stage++) {
    const name = `decoder.up_blocks.${stage}.upsamplers.0`;
    h = conv2d(g, upsampleNearest2x(g, h, name), widths[stage], widths[stage + 1], `${name}.conv`);
  }
  const last = widths[widths.length - 1];
  const rgb = conv2d(g, silu(g, groupNorm(g, h, last, NORM.groups, NORM.epsilon, 'decoder.conv_norm_out')), last, VAE_DECODER.outChannels, 'decoder.conv_out');
  g.op('Tanh', [rgb], [], 'sample');

  return g.toModel(
    'vae_decoder',
    [{ name: 'latent_sample', type: g.floatType, shape: ['batch', 'channels', 'height', 'width'] }],
    [{ name: 'sample', type: g.floatType, shape: ['batch', VAE_DECODER.outChannels, 'image_height', 'image_width'] }],
  );
}
