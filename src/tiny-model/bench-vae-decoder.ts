import { type GraphBuilder, type ModelProto, intsAttr } from './graph.ts';
import { attention, conv2d, groupNorm, resnetBlock, silu, upsampleNearest2x } from './layers.ts';

export interface BenchVaeDims {
  /** Highest resolution first, as in diffusers' config; n entries = n − 1 upsamplings. */
  blockOutChannels: number[];
  layersPerBlock: number;
  groups: number;
}

/** SD 1.x's AutoencoderKL (post_quant_conv + decoder: 49,490,199 parameters). */
export const SD15_VAE: BenchVaeDims = {
  blockOutChannels: [128, 256, 512, 512],
  layersPerBlock: 2,
  groups: 32,
};

const LATENT_CHANNELS = 4;
const EPSILON = 1e-6;

/**
 * AutoencoderKL's decode path: post_quant_conv; conv_in; mid block (resnet, single-head self-attention over every
 * latent pixel, resnet); up blocks of `layersPerBlock` + 1 resnets with nearest ×2 + conv between them; norm →
 * SiLU → conv_out to RGB.
 */
export function buildBenchVaeDecoder(g: GraphBuilder, dims: BenchVaeDims): ModelProto {
  const widths = [...dims.blockOutChannels].reverse();
  const norm = { groups: dims.groups, epsilon: EPSILON };

  const latent = conv2d(g, 'latent_sample', LATENT_CHANNELS, LATENT_CHANNELS, 'post_quant_conv', { kernel: 1 });
  let h = conv2d(g, latent, LATENT_CHANNELS, widths[0], 'decoder.conv_in');
  let width = widths[0];
  h = resnetBlock(g, h, width, width, 'decoder.mid_block.resnets.0', norm);
  h = selfAttention(g, h, width, 'decoder.mid_block.attentions.0', dims.groups);
  h = resnetBlock(g, h, width, width, 'decoder.mid_block.resnets.1', norm);

  for (let block = 0; block < widths.length; block++) {
    const name = `decoder.up_blocks.${block}`;
    for (let layer = 0; layer <= dims.layersPerBlock; layer++) {
      h = resnetBlock(g, h, width, widths[block], `${name}.resnets.${layer}`, norm);
      width = widths[block];
    }
    if (block < widths.length - 1) h = conv2d(g, upsampleNearest2x(g, h, `${name}.upsamplers.0`), width, width, `${name}.upsamplers.0.conv`);
  }

  const out = silu(g, groupNorm(g, h, width, dims.groups, EPSILON, 'decoder.conv_norm_out'));
  conv2d(g, out, width, 3, 'decoder.conv_out', { output: 'sample' });

  return g.toModel(
    'vae_decoder',
    [{ name: 'latent_sample', type: g.floatType, shape: ['batch', LATENT_CHANNELS, 'latent_height', 'latent_width'] }],
    [{ name: 'sample', type: g.floatType, shape: ['batch', 3, 'height', 'width'] }],
  );
}

/** diffusers' Attention as the VAE uses it: GroupNorm, one head over all pixels, q/k/v/out with biases, residual. */
function selfAttention(g: GraphBuilder, x: string, channels: number, name: string, groups: number): string {
  const normed = groupNorm(g, x, channels, groups, EPSILON, `${name}.group_norm`);
  const tokens = g.op('Transpose', [g.op('Reshape', [normed, g.int64Constant(`${name}.token_shape`, [0, 0, -1])])], [intsAttr('perm', [0, 2, 1])]);
  const attended = attention(g, tokens, tokens, name, { channels, contextChannels: channels, heads: 1, projectionBias: true });
  const image = g.op('Reshape', [g.op('Transpose', [attended], [intsAttr('perm', [0, 2, 1])]), g.op('Shape', [x])]);
  return g.op('Add', [image, x]);
}
