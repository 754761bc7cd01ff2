import type { ClipTextConfig } from './configs.ts';
import { attention, gelu, layerNorm, linear, quickGelu } from './layers.ts';
import { type GraphBuilder, type ModelProto, type ValueSpec, intAttr } from './onnx-graph.ts';

/** transformers' legacy configs give eos_token_id 2; CLIP then finds the end of the text as the largest id. */
const LEGACY_EOS_TOKEN_ID = 2;
/** Large enough to zero a score after Softmax, small enough to stay finite in float16. */
const MASKED_SCORE = -1e4;

export interface ClipTextModelOptions {
  /** int32 like diffusers' ONNX converter, int64 like Optimum. */
  inputIdsType: 'int32' | 'int64';
  /**
   * Also output `hidden_states.{layers − 1}`: the penultimate layer's states before the final norm, which SDXL
   * conditions on (the name Optimum's exports give that entry of hidden_states).
   */
  penultimateHiddenState?: boolean;
  /** Output every entry of hidden_states, `hidden_states.0` (the embeddings) to `hidden_states.{layers}`, as Optimum and Olive export SDXL's text encoders. */
  allHiddenStates?: boolean;
}

/** The transformer shapes CLIP's text and vision encoders share. */
export type ClipEncoderConfig = Pick<ClipTextConfig, 'hidden_size' | 'intermediate_size' | 'num_attention_heads' | 'hidden_act' | 'layer_norm_eps'>;

/** One CLIPEncoderLayer (pre-norm self-attention, then a pre-norm MLP, each added back), `mask` added to its scores. */
export function clipEncoderLayer(g: GraphBuilder, states: string, prefix: string, config: ClipEncoderConfig, mask?: string): string {
  const { hidden_size: hidden, layer_norm_eps: epsilon } = config;
  const normed = layerNorm(g, states, `${prefix}.layer_norm1`, hidden, epsilon);
  const attended = attention(g, normed, normed, `${prefix}.self_attn`, {
    channels: hidden,
    contextChannels: hidden,
    heads: config.num_attention_heads,
    projections: { query: 'q_proj', key: 'k_proj', value: 'v_proj', out: 'out_proj' },
    projectionBias: true,
    additiveMask: mask,
  });
  states = g.op('Add', [states, attended]);
  const expanded = linear(g, layerNorm(g, states, `${prefix}.layer_norm2`, hidden, epsilon), `${prefix}.mlp.fc1`, hidden, config.intermediate_size);
  const activated = config.hidden_act === 'gelu' ? gelu(g, expanded) : quickGelu(g, expanded);
  return g.op('Add', [states, linear(g, activated, `${prefix}.mlp.fc2`, config.intermediate_size, hidden)]);
}

/**
 * transformers' CLIPTextModel (or CLIPTextModelWithProjection): token + position embeddings, pre-norm layers of
 * causal self-attention and an MLP, a final LayerNorm. The pooled output is the state at the end-of-text token
 * (CLIP's rule: the largest id for legacy configs, else the first eos_token_id); with projection, `text_embeds`
 * is it projected. Parameters are read under the state-dict names (`text_model.…`, `text_projection.weight`).
 */
export function buildClipTextModel(g: GraphBuilder, config: ClipTextConfig, options: ClipTextModelOptions): ModelProto {
  const { vocab_size: vocabSize, hidden_size: hidden, max_position_embeddings: maxPositions, layer_norm_eps: epsilon } = config;
  const inputIds = 'input_ids';

  const tokenEmbedding = g.parameter('text_model.embeddings.token_embedding.weight', [vocabSize, hidden], { kind: 'embedding' });
  const positionEmbedding = g.parameter('text_model.embeddings.position_embedding.weight', [maxPositions, hidden], { kind: 'embedding' });
  const sequenceLength = g.op('Shape', [inputIds], [intAttr('start', 1), intAttr('end', 2)]);
  const zero = g.int64Constant('zero', [0]);
  const positions = g.op('Slice', [positionEmbedding, zero, sequenceLength, zero]);
  let states = g.op('Add', [g.op('Gather', [tokenEmbedding, inputIds], [intAttr('axis', 0)]), positions]);

  const causalMask = new Float32Array(maxPositions * maxPositions);
  for (let row = 0; row < maxPositions; row++) {
    for (let column = row + 1; column < maxPositions; column++) causalMask[row * maxPositions + column] = MASKED_SCORE;
  }
  const mask = g.op('Slice', [
    g.floatConstant('causal_mask', [maxPositions, maxPositions], causalMask),
    g.int64Constant('mask_start', [0, 0]),
    g.op('Concat', [sequenceLength, sequenceLength], [intAttr('axis', 0)]),
    g.int64Constant('mask_axes', [0, 1]),
  ]);

  const outputs: ValueSpec[] = [];
  const hiddenStateOutput = (layer: number) => {
    const name = `hidden_states.${layer}`;
    states = g.op('Identity', [states], [], name);
    outputs.push({ name, type: g.floatType, shape: ['batch', 'sequence', hidden] });
  };
  for (let layer = 0; layer < config.num_hidden_layers; layer++) {
    if (options.allHiddenStates || (options.penultimateHiddenState && layer === config.num_hidden_layers - 1)) hiddenStateOutput(layer);
    states = clipEncoderLayer(g, states, `text_model.encoder.layers.${layer}`, config, mask);
  }

  if (options.allHiddenStates) hiddenStateOutput(config.num_hidden_layers);
  const lastHiddenState = layerNorm(g, states, 'text_model.final_layer_norm', hidden, epsilon, 'last_hidden_state');
  const endOfText =
    config.eos_token_id === LEGACY_EOS_TOKEN_ID
      ? inputIds
      : g.cast(g.op('Equal', [g.cast(inputIds, 'int64'), g.int64Constant('eos_token_id', [config.eos_token_id], [])]), 'int32');
  const endOfTextPosition = g.op('ArgMax', [endOfText], [intAttr('axis', 1), intAttr('keepdims', 1)]);
  const lastHidden: ValueSpec = { name: 'last_hidden_state', type: g.floatType, shape: ['batch', 'sequence', hidden] };

  if (config.architectures.includes('CLIPTextModelWithProjection')) {
    const pooled = g.op('GatherND', [lastHiddenState, endOfTextPosition], [intAttr('batch_dims', 1)]);
    const projected = linear(g, pooled, 'text_projection', hidden, config.projection_dim, false);
    g.op('Identity', [projected], [], 'text_embeds');
    outputs.unshift({ name: 'text_embeds', type: g.floatType, shape: ['batch', config.projection_dim] }, lastHidden);
  } else {
    g.op('GatherND', [lastHiddenState, endOfTextPosition], [intAttr('batch_dims', 1)], 'pooler_output');
    outputs.unshift(lastHidden, { name: 'pooler_output', type: g.floatType, shape: ['batch', hidden] });
  }
  return g.toModel('text_encoder', [{ name: inputIds, type: options.inputIdsType, shape: ['batch', 'sequence'] }], outputs);
}
