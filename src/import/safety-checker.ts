import { writeSafetyChecker } from '../graphs/components.ts';
import { resolveSafetyCheckerConfig } from '../graphs/configs.ts';
import type { Precision } from '../graphs/onnx-graph.ts';
import type { WrittenGraph } from '../graphs/write-graph.ts';
import { CheckpointWeights } from './checkpoint-weights.ts';
import { openComponentWeights, readComponentConfig } from './component-folder.ts';

/**
 * Builds the ONNX safety checker from diffusers' StableDiffusionSafetyChecker folder (config.json +
 * model.safetensors, as CompVis/stable-diffusion-safety-checker ships it, or a model's safety_checker/): writes
 * `outDir/model.onnx` and `outDir/config.json`, what SAFETY_CHECKER loads.
 */
export async function importSafetyChecker(sourceDir: string, outDir: string, options: { precision?: Precision } = {}): Promise<WrittenGraph> {
  const config = resolveSafetyCheckerConfig(readComponentConfig(sourceDir, 'safety_checker'));
  const tensors = openComponentWeights(sourceDir, 'safety_checker');
  try {
    return await writeSafetyChecker(outDir, config, {
      precision: options.precision ?? 'fp32',
      attention: 'unfused',
      weights: new CheckpointWeights(tensors, 'safety_checker', (name) => [{ key: name }]),
    });
  } finally {
    tensors.close();
  }
}
