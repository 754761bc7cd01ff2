import { mkdirSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { writeTextEncoder, writeUNet, writeVae } from '../src/graphs/components.ts';
import { resolveClipTextConfig, resolveUnetConfig, resolveVaeConfig } from '../src/graphs/configs.ts';
import type { TimestepShape, TimestepType } from '../src/graphs/unet-2d-condition.ts';
import { CheckpointWeights } from '../src/import/checkpoint-weights.ts';
import { openComponentWeights, readComponentConfig } from '../src/import/component-folder.ts';

/** How an exporter lays an SDXL pipeline out: input types, which hidden states it outputs, its external-data file name. */
export interface ExportLayout {
  inputIdsType: 'int32' | 'int64';
  timestepType: TimestepType;
  timestepShape: TimestepShape;
  externalDataFile: string;
  /** Whether the text encoders' folders keep their config.json. */
  textEncoderConfigs: boolean;
}

/** Optimum's (stabilityai/sdxl-turbo's ONNX files): every hidden state output, weights in model.onnx_data. */
export const OPTIMUM_LAYOUT: ExportLayout = { inputIdsType: 'int32', timestepType: 'int64', timestepShape: 'one', externalDataFile: 'model.onnx_data', textEncoderConfigs: true };
/** Olive's (DirectML examples): weights in model.onnx.data, int64 ids, a timestep per batch entry, no text-encoder configs. */
export const OLIVE_LAYOUT: ExportLayout = { inputIdsType: 'int64', timestepType: 'float32', timestepShape: 'batch', externalDataFile: 'model.onnx.data', textEncoderConfigs: false };

/**
 * A diffusers SDXL folder exported the way the hub's ONNX exports are: each component's graph as the exporter lays
 * it out (attention unfused, as torch exports it), the tokenizers, scheduler and model_index.json as they were.
 */
export async function writeSdxlExport(source: string, target: string, layout: ExportLayout): Promise<void> {
  mkdirSync(target, { recursive: true });
  for (const entry of ['model_index.json', 'scheduler', 'tokenizer', 'tokenizer_2']) symlinkSync(join(source, entry), join(target, entry));
  const common = { precision: 'fp32', attention: 'unfused', externalDataFile: layout.externalDataFile } as const;
  const weights = (component: string) => new CheckpointWeights(openComponentWeights(join(source, component), component), component, (name) => [{ key: name }]);
  const config = (component: string) => readComponentConfig(join(source, component), component);
  for (const component of ['text_encoder', 'text_encoder_2']) {
    const source = weights(component);
    await writeTextEncoder(join(target, component), resolveClipTextConfig(config(component)), { ...common, weights: source, inputIdsType: layout.inputIdsType, allHiddenStates: true });
    source.tensors.close();
    if (!layout.textEncoderConfigs) rmSync(join(target, component, 'config.json'));
  }
  const unet = weights('unet');
  await writeUNet(join(target, 'unet'), resolveUnetConfig(config('unet')), { ...common, weights: unet, timestepType: layout.timestepType, timestepShape: layout.timestepShape });
  unet.tensors.close();
  const vae = weights('vae');
  await writeVae(target, resolveVaeConfig(config('vae')), { ...common, weights: vae });
  vae.tensors.close();
}
