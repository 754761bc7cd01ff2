import { type GraphBuilder, type ModelProto, intAttr } from './graph.ts';
import { attention, layerNorm, linear, quickGelu } from './layers.ts';

export interface BenchTextEncoderDims {
  vocabSize: number;
  hiddenSize: number;
  heads: number;
  layers: number;
  intermediateSize: number;
  maxPositions: number;
}

/** openai/clip-vit-large-patch14's text model (SD 1.x's text_encoder): 123,060,480 parameters. */
export const SD15_TEXT_ENCODER: BenchTextEncoderDims = {
  vocabSize: 49408,
  hiddenSize: 768,
  heads: 12,
  layers: 12,
  intermediateSize: 3072,
  maxPositions: 77,
};

/** Zeroes a score after Softmax and stays finite in float16. */
const MASKED_SCORE = -1e4;

/**
 * CLIPTextModel: token + position embeddings, pre-norm layers of causal self-attention and a quick-GELU MLP, a
 * final LayerNorm; pooler_output is the hidden state at the end-of-text token (the largest id, as CLIP finds it).
 */
export function buildBenchTextEncoder(g: GraphBuilder, dims: BenchTextEncoderDims): ModelProto {
  const { vocabSize, hiddenSize, heads, layers, intermediateSize, maxPositions } = dims;
  const inputIds = 'input_ids';
  const tokenEmbedding = g.parameter('embeddings.token_embedding.weight', [vocabSize, hiddenSize], Math.sqrt(3));
  const positionEmbedding = g.parameter('embeddings.position_embedding.weight', [maxPositions, hiddenSize], 0.5);

  const sequenceLength = g.op('Shape', [inputIds], [intAttr('start', 1), intAttr('end', 2)]);
  const zero = g.int64Constant('zero', [0]);
  const positions = g.op('Slice', [positionEmbedding, zero, sequenceLength, zero]);
  let hidden = g.op('Add', [g.op('Gather', [tokenEmbedding, inputIds], [intAttr('axis', 0)]), positions]);

  const causal = new Float32Array(maxPositions * maxPositions);
  for (let row = 0; row < maxPositions; row++) causal.fill(MASKED_SCORE, row * maxPositions + row + 1, (row + 1) * maxPositions);
  const mask = g.op('Slice', [
    g.floatConstant('causal_mask', [maxPositions, maxPositions], causal),
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
    const normed2 = layerNorm(g, hidden, hiddenSize, `${prefix}.layer_norm2`);
    const expanded = quickGelu(g, linear(g, normed2, hiddenSize, intermediateSize, `${prefix}.mlp.fc1`), `${prefix}.mlp`);
    hidden = g.op('Add', [hidden, linear(g, expanded, intermediateSize, hiddenSize, `${prefix}.mlp.fc2`)]);
  }

  const lastHiddenState = layerNorm(g, hidden, hiddenSize, 'final_layer_norm', 'last_hidden_state');
  const endOfText = g.op('ArgMax', [inputIds], [intAttr('axis', 1), intAttr('keepdims', 1)]);
  g.op('GatherND', [lastHiddenState, endOfText], [intAttr('batch_dims', 1)], 'pooler_output');

  return g.toModel(
    'text_encoder',
    [{ name: inputIds, type: 'int32', shape: ['batch', 'sequence'] }],
    [
      { name: 'last_hidden_state', type: g.floatType, shape: ['batch', 'sequence', hiddenSize] },
      { name: 'pooler_output', type: g.floatType, shape: ['batch', hiddenSize] },
    ],
  );
}
