import type { GraphBuilder, ModelProto } from './graph.ts';
import { type TextEncoderDims, buildClipTextEncoder } from './text-encoder.ts';

/** openai/clip-vit-large-patch14's text model (SD 1.x's text_encoder): 123,060,480 parameters. */
export const SD15_TEXT_ENCODER: TextEncoderDims = {
  vocabSize: 49408,
  hiddenSize: 768,
  heads: 12,
  layers: 12,
  intermediateSize: 3072,
  maxPositions: 77,
};

/** CLIPTextModel at the given widths with int32 input_ids, as diffusers' ONNX converter exports SD 1.5. */
export function buildBenchTextEncoder(g: GraphBuilder, dims: TextEncoderDims): ModelProto {
  return buildClipTextEncoder(g, dims, 'int32');
}
