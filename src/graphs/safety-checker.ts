import { clipEncoderLayer } from './clip-text-model.ts';
import type { SafetyCheckerConfig } from './configs.ts';
import { conv2d, imageToTokens, layerNorm, linear } from './layers.ts';
import { type GraphBuilder, type ModelProto, intAttr, intsAttr } from './onnx-graph.ts';

/** The concepts diffusers' StableDiffusionSafetyChecker compares an image with (its parameters' fixed sizes). */
export const CONCEPTS = 17;
export const SPECIAL_CARE_CONCEPTS = 3;
/** torch.nn.functional.normalize's default eps. */
const NORMALIZE_EPSILON = 1e-12;

/**
 * diffusers' StableDiffusionSafetyChecker up to its cosine distances: the CLIP vision tower (patch embedding, class
 * token and positions, pre_layrnorm, the encoder, post_layernorm of the class token), visual_projection, then the
 * cosine of the image embedding with each concept embedding. The thresholds are outputs too, so the scoring that
 * follows (a Python loop in diffusers, see src/pipeline/safety-checker.ts) reads everything from one graph. Parameters
 * keep the checker's state-dict names (`vision_model.vision_model.…`, `concept_embeds`, …).
 */
export function buildSafetyChecker(g: GraphBuilder, config: SafetyCheckerConfig): ModelProto {
  const vision = config.vision_config;
  const { hidden_size: hidden, image_size: size, patch_size: patch, num_channels: channels } = vision;
  const prefix = 'vision_model.vision_model';
  const input = 'clip_input';
  const positions = (size / patch) ** 2 + 1;

  const patches = imageToTokens(
    g,
    conv2d(g, input, `${prefix}.embeddings.patch_embedding`, channels, hidden, { kernel: patch, stride: patch, pads: [0, 0, 0, 0], bias: false }),
    'patches',
  );
  const batch = g.op('Shape', [input], [intAttr('start', 0), intAttr('end', 1)]);
  const classShape = g.op('Concat', [batch, g.int64Constant('class_token_shape', [1, hidden])], [intAttr('axis', 0)]);
  const classEmbedding = g.parameter(`${prefix}.embeddings.class_embedding`, [hidden], { kind: 'embedding' }, { graphDims: [1, 1, hidden] });
  const classTokens = g.op('Expand', [classEmbedding, classShape]);
  const positionEmbedding = g.parameter(`${prefix}.embeddings.position_embedding.weight`, [positions, hidden], { kind: 'embedding' });
  let states = g.op('Add', [g.op('Concat', [classTokens, patches], [intAttr('axis', 1)]), positionEmbedding]);
  states = layerNorm(g, states, `${prefix}.pre_layrnorm`, hidden, vision.layer_norm_eps);
  for (let layer = 0; layer < vision.num_hidden_layers; layer++) states = clipEncoderLayer(g, states, `${prefix}.encoder.layers.${layer}`, vision);

  const classState = g.op('Gather', [states, g.int64Constant('class_token', [0], [])], [intAttr('axis', 1)]);
  const pooled = layerNorm(g, classState, `${prefix}.post_layernorm`, hidden, vision.layer_norm_eps);
  const imageEmbeds = linear(g, pooled, 'visual_projection', hidden, config.projection_dim, false);
  g.op('Identity', [imageEmbeds], [], 'image_embeds');

  // Like diffusers, the distances are taken in float32 whatever the tower's precision.
  const normalizedImage = normalizeRows(g, g.toFloat32(imageEmbeds), 'image_embeds');
  const cosine = (name: string, count: number, output: string) => {
    const embeds = g.toFloat32(g.parameter(name, [count, config.projection_dim], { kind: 'embedding' }));
    const normalized = g.op('Transpose', [normalizeRows(g, embeds, name)], [intsAttr('perm', [1, 0])]);
    g.op('MatMul', [normalizedImage, normalized], [], output);
  };
  cosine('special_care_embeds', SPECIAL_CARE_CONCEPTS, 'special_cos_dist');
  cosine('concept_embeds', CONCEPTS, 'cos_dist');
  for (const [name, count] of [['special_care_embeds_weights', SPECIAL_CARE_CONCEPTS], ['concept_embeds_weights', CONCEPTS]] as const) {
    g.op('Identity', [g.toFloat32(g.parameter(name, [count], { kind: 'norm-shift' }))], [], name);
  }

  const float32 = (name: string, shape: (number | string)[]) => ({ name, type: 'float32' as const, shape });
  return g.toModel(
    'safety_checker',
    [{ name: input, type: g.floatType, shape: ['batch', channels, size, size] }],
    [
      { name: 'image_embeds', type: g.floatType, shape: ['batch', config.projection_dim] },
      float32('special_cos_dist', ['batch', SPECIAL_CARE_CONCEPTS]),
      float32('cos_dist', ['batch', CONCEPTS]),
      float32('special_care_embeds_weights', [SPECIAL_CARE_CONCEPTS]),
      float32('concept_embeds_weights', [CONCEPTS]),
    ],
  );
}

/** torch.nn.functional.normalize(x, dim=1): each row over max(its L2 norm, eps). */
function normalizeRows(g: GraphBuilder, x: string, name: string): string {
  const norm = g.op('Sqrt', [g.op('ReduceSumSquare', [x], [intsAttr('axes', [-1]), intAttr('keepdims', 1)])]);
  return g.op('Div', [x, g.op('Max', [norm, g.scalar(`${name}.normalize_epsilon`, NORMALIZE_EPSILON, 'float32')])]);
}
