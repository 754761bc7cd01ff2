import { GraphBuilder, type ModelProto, type Precision, intAttr } from './graph.ts';
import { attention, layerNorm, linear, quickGelu } from './layers.ts';

/** The widths of a CLIPTextModel. */
export interface TextEncoderDims {
  vocabSize: number;
  hiddenSize: number;
  heads: number;
  layers: number;
  intermediateSize: number;
  maxPositions: number;
}

/** The tiny model's widths; its vocabulary is the tiny tokenizer's. */
export const TEXT_ENCODER = {
  hiddenSize: 32,
  heads: 2,
  layers: 2,
  intermediateSize: 64,
  maxPositions: 77,
} as const;

/** Large enough to zero a score after Softmax, small enough to stay finite in float16. */
const MASKED_SCORE = -1e4;

export interface TextEncoderOptions {
  precision: Precision;
  random: () => number;
  vocabSize: number;
  inputIdsType: 'int32' | 'int64';
}

/** The tiny model's text encoder, its weights drawn from `random`. */
export function buildTextEncoder({ precision, random, vocabSize, inputIdsType }: TextEncoderOptions): ModelProto {
  return buildClipTextEncoder(new GraphBuilder(precision, random), { ...TEXT_ENCODER, vocabSize }, inputIdsType);
}

/**
 * CLIPTextModel at the given widths: token + position embeddings, pre-norm layers of causal self-attention and a
 * quick-GELU MLP, a final LayerNorm; the pooled output is the hidden state at the end-of-text token, found as
 * CLIP finds it: the position of the largest id (end-of-text has the largest id in a CLIP vocabulary).
 */
export function buildClipTextEncoder(g: GraphBuilder, dims: TextEncoderDims, inputIdsType: 'int32' | 'int64'): ModelProto {
  const { vocabSize, hiddenSize, heads, layers, intermediateSize, maxPositions } = dims;
  const inputIds = 'input_ids';

  const tokenEmbedding = g.parameter('embeddings.token_embedding.weight', [vocabSize, hiddenSize], Math.sqrt(3));
  const positionEmbedding = g.parameter('embeddings.position_embedding.weight', [maxPositions, hiddenSize], 0.5);

  const sequenceLength = g.op('Shape', [inputIds], [intAttr('start', 1), intAttr('end', 2)]);
  const zero = g.int64Constant('zero', [0]);
  const positions = g.op('Slice', [positionEmbedding, zero, sequenceLength, zero]);
  let hidden = g.op('Add', [g.op('Gather', [tokenEmbedding, inputIds], [intAttr('axis', 0)]), positions]);

  const causalMask = new Float32Array(maxPositions * maxPositions);
  for (let row = 0; row < maxPositions; row++) {
    for (let column = row + 1; column < maxPositions; column++) causalMask[row * maxPositions + column] = MASKED_SCORE;
  }
  const fullMask = g.floatConstant('causal_mask', [maxPositions, maxPositions], causalMask);
  const mask = g.op('Slice', [
    fullMask,
    g.int64Constant('mask_start', [0, 0]),
    g.op('Concat', [sequenceLength, sequenceLength], [intAttr('axis', 0)]),
    g.int64Constant('mask_axes', [0, 1]),
  ]);

  for (let layer = 0; layer < layers; layer++) {
    const prefix = `encoder.layers.${layer}`;
    const normed = layerNorm(g, hidden, hiddenSize, `${prefix}.layer_norm1`);
    const attended = attention(g, normed, normed, `${prefix}.self_attn`, {
      channels: hiddenSize,
      contextChannels: hiddenSize,
      heads,
      additiveMask: mask,
      projectionBias: true,
    });
    hidden = g.op('Add', [hidden, attended]);
    const expanded = quickGelu(g, linear(g, layerNorm(g, hidden, hiddenSize, `${prefix}.layer_norm2`), hiddenSize, intermediateSize, `${prefix}.mlp.fc1`), `${prefix}.mlp`);
    hidden = g.op('Add', [hidden, linear(g, expanded, intermediateSize, hiddenSize, `${prefix}.mlp.fc2`)]);
  }

  const lastHiddenState = layerNorm(g, hidden, hiddenSize, 'final_layer_norm', 'last_hidden_state');
  const endOfTextPosition = g.op('ArgMax', [inputIds], [intAttr('axis', 1), intAttr('keepdims', 1)]);
  g.op('GatherND', [lastHiddenState, endOfTextPosition], [intAttr('batch_dims', 1)], 'pooler_output');

  return g.toModel(
    'text_encoder',
    [{ name: inputIds, type: inputIdsType, shape: ['batch', 'sequence'] }],
    [
      { name: 'last_hidden_state', type: g.floatType, shape: ['batch', 'sequence', hiddenSize] },
      { name: 'pooler_output', type: g.floatType, shape: ['batch', hiddenSize] },
    ],
  );
}
