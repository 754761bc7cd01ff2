import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type UNetConfig, resolveAutoencoderKLConfig, resolveUnetConfig } from '../src/graphs/configs.ts';
import { openComponentWeights, readComponentConfig } from '../src/import/component-folder.ts';
import { type TensorRef, openClipKey, unetLdmKey, vaeLdmKey } from '../src/import/ldm-keys.ts';
import { SafetensorsFile, SafetensorsWriter } from '../src/models/safetensors.ts';

/*
 * Other layouts of the fixtures' weights, written the way other tools save them, so the importer's readers of
 * those layouts are checked against the same reference images.
 */

interface Tensor {
  shape: number[];
  data: Float32Array;
}

function writeAll(path: string, tensors: Map<string, Tensor>, metadata: Record<string, string> = {}): void {
  const entries = [...tensors.entries()];
  const writer = new SafetensorsWriter(path, entries.map(([name, { shape }]) => ({ name, dtype: 'F32', shape })), metadata);
  for (const [name, { data }] of entries) writer.write(name, data);
  writer.close();
}

function readAll(dir: string, component: string): Map<string, Tensor> {
  const tensors = openComponentWeights(dir, component);
  const out = new Map<string, Tensor>();
  for (const name of tensors.names) out.set(name, { shape: tensors.info(name)!.shape, data: tensors.readFloat32(name) });
  tensors.close();
  return out;
}

/**
 * An SD 2.x diffusers folder as one LDM-named file, as the original repository saves it: OpenCLIP text encoder
 * (q, k, v fused into in_proj; one more layer than diffusers keeps, which the importer must leave out).
 */
export function writeSd2SingleFile(folder: string, path: string): void {
  const out = new Map<string, Tensor>();
  const unetConfig = resolveUnetConfig(readComponentConfig(join(folder, 'unet'), 'unet'));
  for (const [name, tensor] of readAll(join(folder, 'unet'), 'unet')) out.set(unetLdmKey(name, unetConfig)!, tensor);
  const vaeConfig = resolveAutoencoderKLConfig(readComponentConfig(join(folder, 'vae'), 'vae'));
  for (const [name, tensor] of readAll(join(folder, 'vae'), 'vae')) {
    const key = vaeLdmKey(name, vaeConfig)!;
    out.set(key, /\.mid\.attn_1\.(q|k|v|proj_out)\.weight$/.test(key) ? { ...tensor, shape: [...tensor.shape, 1, 1] } : tensor);
  }

  const text = readAll(join(folder, 'text_encoder'), 'text_encoder');
  const hidden = text.get('text_model.final_layer_norm.weight')!.shape[0];
  const fused = new Map<string, Tensor>();
  for (const [name, tensor] of text) {
    const ref: TensorRef | undefined = openClipKey(name, hidden);
    if (!ref) continue;
    if (!ref.rows) {
      out.set(ref.key, tensor);
      continue;
    }
    const whole = fused.get(ref.key) ?? { shape: [3 * hidden, ...tensor.shape.slice(1)], data: new Float32Array(3 * tensor.data.length) };
    whole.data.set(tensor.data, (ref.rows.start / hidden) * tensor.data.length);
    fused.set(ref.key, whole);
  }
  for (const [key, tensor] of fused) out.set(key, tensor);
  const layers = [...text.keys()].filter((name) => name.endsWith('.layer_norm1.weight')).length;
  for (const [key, tensor] of [...out].filter(([key]) => key.includes(`.resblocks.${layers - 1}.`))) {
    out.set(key.replace(`.resblocks.${layers - 1}.`, `.resblocks.${layers}.`), { shape: tensor.shape, data: tensor.data.map((value) => -value) });
  }
  out.set('cond_stage_model.model.logit_scale', { shape: [], data: Float32Array.of(4.6) });
  writeAll(path, out);
}

/** A component's weights split over two shards with a `.safetensors.index.json`, as large models are saved. */
export function writeSharded(sourceDir: string, component: string, targetDir: string, baseName: string): void {
  const tensors = [...readAll(sourceDir, component)];
  const half = Math.ceil(tensors.length / 2);
  const shards = [tensors.slice(0, half), tensors.slice(half)];
  const weightMap: Record<string, string> = {};
  shards.forEach((shard, index) => {
    const file = `${baseName}-0000${index + 1}-of-00002.safetensors`;
    writeAll(join(targetDir, file), new Map(shard));
    for (const [name] of shard) weightMap[name] = file;
  });
  writeFileSync(join(targetDir, `${baseName}.safetensors.index.json`), JSON.stringify({ metadata: {}, weight_map: weightMap }));
}

/**
 * The fixtures' kohya LoRA in another naming: diffusers/PEFT (`unet.<module>.lora_A.weight`, with `.alpha`), the
 * older diffusers one (`.lora.down.weight`), or kohya with the U-Net's original LDM module names.
 */
export function writeRenamedLora(kohyaPath: string, path: string, naming: 'peft' | 'diffusers-old' | 'kohya-ldm', model: { unet: UNetConfig; modules: Map<string, string> }): void {
  const file = SafetensorsFile.open(kohyaPath);
  const out = new Map<string, Tensor>();
  for (const key of file.tensors.keys()) {
    const match = /^(lora_unet|lora_te)_(.+)\.(lora_down\.weight|lora_up\.weight|alpha)$/.exec(key)!;
    const [, prefix, flat, part] = match;
    const module = model.modules.get(`${prefix}_${flat}`)!;
    const tensor = { shape: file.info(key).shape, data: file.readFloat32(key) };
    const component = prefix === 'lora_unet' ? 'unet' : 'text_encoder';
    let name: string;
    if (naming === 'kohya-ldm') {
      const ldm = component === 'unet' ? unetLdmKey(`${module}.weight`, model.unet)!.replace(/^model\.diffusion_model\./, '').replace(/\.weight$/, '') : module;
      name = `${prefix}_${ldm.replace(/\./g, '_')}.${part}`;
    } else if (part === 'alpha') {
      name = `${component}.${module}.alpha`;
    } else {
      const down = part === 'lora_down.weight';
      name = `${component}.${module}.${naming === 'peft' ? (down ? 'lora_A' : 'lora_B') : down ? 'lora.down' : 'lora.up'}.weight`;
    }
    out.set(name, tensor);
  }
  file.close();
  writeAll(path, out);
}

