import { writeTextEncoder } from '../graphs/components.ts';
import { resolveClipTextConfig } from '../graphs/configs.ts';
import type { Precision } from '../graphs/onnx-graph.ts';
import type { WrittenGraph } from '../graphs/write-graph.ts';
import { CheckpointWeights } from './checkpoint-weights.ts';
import { openComponentWeights, readComponentConfig } from './component-folder.ts';

export interface TextEncoderImportOptions {
  /** Default fp32. */
  precision?: Precision;
  /** Default int32 (as diffusers' ONNX converter exports SD's text encoder). */
  inputIdsType?: 'int32' | 'int64';
  /** Also output `hidden_states.{layers − 1}` (SDXL's conditioning). */
  penultimateHiddenState?: boolean;
}

/**
 * Builds an ONNX CLIP text encoder from a transformers CLIPTextModel folder (config.json + model.safetensors):
 * writes `outDir/model.onnx` and `outDir/config.json`, with the outputs last_hidden_state and pooler_output
 * (text_embeds and last_hidden_state for CLIPTextModelWithProjection), input_ids of any length up to the
 * model's positions.
 */
export async function importTextEncoder(sourceDir: string, outDir: string, options: TextEncoderImportOptions = {}): Promise<WrittenGraph> {
  const config = resolveClipTextConfig(readComponentConfig(sourceDir, 'text_encoder'));
  const tensors = openComponentWeights(sourceDir, 'text_encoder');
  try {
    return await writeTextEncoder(outDir, config, {
      precision: options.precision ?? 'fp32',
      attention: 'unfused',
      weights: new CheckpointWeights(tensors, 'text_encoder', (name) => [{ key: name }]),
      inputIdsType: options.inputIdsType ?? 'int32',
      penultimateHiddenState: options.penultimateHiddenState,
    });
  } finally {
    tensors.close();
  }
}
