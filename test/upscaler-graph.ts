import { encodeModel, GraphBuilder, intAttr, intsAttr, type Dim } from '../src/graphs/onnx-graph.ts';

/**
 * A small ×2 super-resolution graph shaped like Real-ESRGAN's tail: two 3x3 convolutions (a receptive field of 2
 * pixels each way), a pixel shuffle (DepthToSpace) and a sigmoid to stay in [0, 1]. `size` fixes its input size.
 */
export function upscalerGraph(size?: number): Uint8Array {
  const g = new GraphBuilder({ precision: 'fp32', attention: 'unfused' });
  const weights = (count: number, seed: number) => Float32Array.from({ length: count }, (_, i) => Math.sin(i * 1.7 + seed) * 0.4);
  const conv = (x: string, inChannels: number, outChannels: number, seed: number) =>
    g.op('Conv', [x, g.floatConstant(`w${seed}`, [outChannels, inChannels, 3, 3], weights(outChannels * inChannels * 9, seed)), g.floatConstant(`b${seed}`, [outChannels], weights(outChannels, seed + 5))], [intsAttr('pads', [1, 1, 1, 1])]);
  const hidden = g.op('Relu', [conv('image', 3, 8, 1)]);
  const shuffled = g.op('DepthToSpace', [conv(hidden, 8, 12, 2)], [intAttr('blocksize', 2)]);
  g.op('Sigmoid', [shuffled], [], 'output');
  const side = (name: string): Dim => size ?? name;
  const model = g.toModel('upscaler', [{ name: 'image', type: 'float32', shape: [1, 3, side('height'), side('width')] }], [
    { name: 'output', type: 'float32', shape: [1, 3, 'out_height', 'out_width'] },
  ]);
  return encodeModel(model);
}
