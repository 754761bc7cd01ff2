import { safetyCheckerParameters, writeSafetyChecker } from '../src/graphs/components.ts';
import { resolveSafetyCheckerConfig, type SafetyCheckerConfig } from '../src/graphs/configs.ts';
import { RandomWeights, type WeightSource } from '../src/graphs/weights.ts';

/** A safety checker of the real architecture, a few channels wide: 224x224 input in 32-pixel patches, two layers. */
export const TINY_SAFETY_CHECKER: SafetyCheckerConfig = resolveSafetyCheckerConfig({
  architectures: ['StableDiffusionSafetyChecker'],
  projection_dim: 16,
  vision_config: { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, patch_size: 32, image_size: 224 },
});

/** Every parameter of the tiny checker, drawn at random (seeded) in the order the graph reads them; replace entries to steer it. */
export function tinyCheckerWeights(seed = 7): Map<string, Float32Array> {
  const random = new RandomWeights(seed);
  const weights = new Map<string, Float32Array>();
  for (const [name, spec] of safetyCheckerParameters(TINY_SAFETY_CHECKER)) weights.set(name, random.read(name, spec.shape, spec.init));
  return weights;
}

export function writeTinySafetyChecker(dir: string, weights: Map<string, Float32Array>): Promise<unknown> {
  const source: WeightSource = { read: (name) => weights.get(name)! };
  return writeSafetyChecker(dir, TINY_SAFETY_CHECKER, { precision: 'fp32', attention: 'unfused', weights: source });
}

/** A checker that flags every image (thresholds far below any cosine) or none (far above). */
export function writeDecidedSafetyChecker(dir: string, flags: 'every image' | 'no image'): Promise<unknown> {
  const weights = tinyCheckerWeights();
  const threshold = flags === 'every image' ? -2 : 2;
  for (const name of ['concept_embeds_weights', 'special_care_embeds_weights']) weights.get(name)!.fill(threshold);
  return writeTinySafetyChecker(dir, weights);
}
