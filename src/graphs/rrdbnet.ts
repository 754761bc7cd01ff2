/**
 * ESRGAN's RRDBNet (basicsr's `RRDBNet`, the architecture of Real-ESRGAN x4plus / x2plus and most 4x-* upscalers)
 * as ONNX: RGB in [0, 1] → RGB 4 times larger, with torch's state-dict names. The project writes it with
 * random weights for the upscaler benchmark (the same work and memory as the trained model).
 */
import { conv2d } from './layers.ts';
import { floatAttr, GraphBuilder, intAttr, stringAttr, type GraphOptions, type ModelProto } from './onnx-graph.ts';

/** The ×4 form (two nearest-neighbour ×2 upsamplings); x2plus differs only by a pixel-unshuffle of its input. */
export interface RrdbNetConfig {
  /** num_feat */
  features: number;
  /** num_grow_ch */
  growth: number;
  /** num_block */
  blocks: number;
}

/** Real-ESRGAN x4plus. */
export const REAL_ESRGAN_X4PLUS: RrdbNetConfig = { features: 64, growth: 32, blocks: 23 };

const LEAKY_SLOPE = 0.2;
const RESIDUAL_SCALE = 0.2;

export function buildRrdbNet(config: RrdbNetConfig, options: GraphOptions): ModelProto {
  const g = new GraphBuilder(options);
  const { features, growth } = config;
  const lrelu = (x: string) => g.op('LeakyRelu', [x], [floatAttr('alpha', LEAKY_SLOPE)]);
  const residual = (x: string, skip: string, label: string) => g.op('Add', [g.op('Mul', [x, g.scalar(`${label}.residual_scale`, RESIDUAL_SCALE)]), skip]);

  const first = conv2d(g, 'input', 'conv_first', 3, features);
  let h = first;
  for (let block = 0; block < config.blocks; block++) {
    const blockInput = h;
    for (let dense = 1; dense <= 3; dense++) {
      const name = `body.${block}.rdb${dense}`;
      const outputs = [h];
      for (let layer = 1; layer <= 5; layer++) {
        const joined = outputs.length === 1 ? h : g.op('Concat', [...outputs], [intAttr('axis', 1)]);
        const conv = conv2d(g, joined, `${name}.conv${layer}`, features + (layer - 1) * growth, layer === 5 ? features : growth);
        outputs.push(layer === 5 ? conv : lrelu(conv));
      }
      h = residual(outputs[5], h, name);
    }
    h = residual(h, blockInput, `body.${block}`);
  }
  h = g.op('Add', [first, conv2d(g, h, 'conv_body', features, features)]);
  const scales = g.floatConstant('upsample_scales', [4], [1, 1, 2, 2], 'float32');
  for (const name of ['conv_up1', 'conv_up2']) {
    const upsampled = g.op('Resize', [h, '', scales], [stringAttr('mode', 'nearest')]);
    h = lrelu(conv2d(g, upsampled, name, features, features));
  }
  conv2d(g, lrelu(conv2d(g, h, 'conv_hr', features, features)), 'conv_last', features, 3, { output: 'output' });
  return g.toModel(
    'rrdbnet',
    [{ name: 'input', type: g.floatType, shape: [1, 3, 'height', 'width'] }],
    [{ name: 'output', type: g.floatType, shape: [1, 3, 'out_height', 'out_width'] }],
  );
}
