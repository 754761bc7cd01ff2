import { copyFileSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
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

/** A diffusers U-Net's and VAE's weights under their LDM names (`model.diffusion_model.*`, `first_stage_model.*`). */
function putLdmUnetAndVae(out: Map<string, Tensor>, folder: string): void {
  const unetConfig = resolveUnetConfig(readComponentConfig(join(folder, 'unet'), 'unet'));
  for (const [name, tensor] of readAll(join(folder, 'unet'), 'unet')) out.set(unetLdmKey(name, unetConfig)!, tensor);
  const vaeConfig = resolveAutoencoderKLConfig(readComponentConfig(join(folder, 'vae'), 'vae'));
  for (const [name, tensor] of readAll(join(folder, 'vae'), 'vae')) {
    const key = vaeLdmKey(name, vaeConfig)!;
    out.set(key, /\.mid\.attn_1\.(q|k|v|proj_out)\.weight$/.test(key) ? { ...tensor, shape: [...tensor.shape, 1, 1] } : tensor);
  }
}

/**
 * A transformers CLIP text model's weights under OpenCLIP's names below `prefix`, as OpenCLIP saves them: q, k and
 * v fused into in_proj, the projection (if any) stored as the matrix the pooled state is multiplied by.
 */
function putOpenClip(out: Map<string, Tensor>, text: Map<string, Tensor>, prefix: string): void {
  const hidden = text.get('text_model.final_layer_norm.weight')!.shape[0];
  const fused = new Map<string, Tensor>();
  for (const [name, tensor] of text) {
    const ref: TensorRef | undefined = openClipKey(name, hidden, prefix);
    if (!ref) continue;
    if (ref.transposed) {
      const [rows, columns] = tensor.shape;
      const data = new Float32Array(tensor.data.length);
      for (let row = 0; row < rows; row++) for (let column = 0; column < columns; column++) data[column * rows + row] = tensor.data[row * columns + column];
      out.set(ref.key, { shape: [columns, rows], data });
    } else if (!ref.rows) {
      out.set(ref.key, tensor);
    } else {
      const whole = fused.get(ref.key) ?? { shape: [3 * hidden, ...tensor.shape.slice(1)], data: new Float32Array(3 * tensor.data.length) };
      whole.data.set(tensor.data, (ref.rows.start / hidden) * tensor.data.length);
      fused.set(ref.key, whole);
    }
  }
  for (const [key, tensor] of fused) out.set(key, tensor);
  out.set(`${prefix}logit_scale`, { shape: [], data: Float32Array.of(4.6) });
}

/**
 * An SD 2.x diffusers folder as one LDM-named file, as the original repository saves it: OpenCLIP text encoder
 * (q, k, v fused into in_proj; one more layer than diffusers keeps, which the importer must leave out).
 */
export function writeSd2SingleFile(folder: string, path: string): void {
  const out = new Map<string, Tensor>();
  putLdmUnetAndVae(out, folder);
  const text = readAll(join(folder, 'text_encoder'), 'text_encoder');
  putOpenClip(out, text, 'cond_stage_model.model.');
  const layers = [...text.keys()].filter((name) => name.endsWith('.layer_norm1.weight')).length;
  for (const [key, tensor] of [...out].filter(([key]) => key.includes(`.resblocks.${layers - 1}.`))) {
    out.set(key.replace(`.resblocks.${layers - 1}.`, `.resblocks.${layers}.`), { shape: tensor.shape, data: tensor.data.map((value) => -value) });
  }
  writeAll(path, out);
}

/**
 * An SDXL diffusers folder as one file with the names of Stability's SGM code (what sd_xl_base_1.0.safetensors
 * and the community checkpoints use): CLIP ViT-L under conditioner.embedders.0.transformer, OpenCLIP bigG under
 * conditioner.embedders.1.model.
 */
export function writeSdxlSingleFile(folder: string, path: string): void {
  const out = new Map<string, Tensor>();
  putLdmUnetAndVae(out, folder);
  for (const [name, tensor] of readAll(join(folder, 'text_encoder'), 'text_encoder')) out.set(`conditioner.embedders.0.transformer.${name}`, tensor);
  putOpenClip(out, readAll(join(folder, 'text_encoder_2'), 'text_encoder_2'), 'conditioner.embedders.1.model.');
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


/** A LoRA module: kohya's key, and the diffusers component and parameter (without `.weight`) it changes. */
export interface LoraModuleSpec {
  key: string;
  component: 'text_encoder' | 'text_encoder_2' | 'unet';
  module: string;
}

/**
 * A rank-2 kohya LoRA over `modules` of a diffusers folder (values from a fixed-seed generator, alpha 1), and the
 * same folder with it merged by hand at `weight` — W + weight · (alpha / rank) · up · down — for the importer's
 * merge to be checked against.
 */
export function writeLoraAndMergedFolder(folder: string, modules: readonly LoraModuleSpec[], weight: number, loraPath: string, mergedFolder: string): void {
  let state = 12345;
  const random = () => ((state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32) * 2 - 1;
  const rank = 2;
  const alpha = 1;
  const lora = new Map<string, Tensor>();
  const components = new Map<string, Map<string, Tensor>>();
  for (const { key, component, module } of modules) {
    const tensors = components.get(component) ?? readAll(join(folder, component), component);
    components.set(component, tensors);
    const target = tensors.get(`${module}.weight`)!;
    const [out, inner] = [target.shape[0], target.data.length / target.shape[0]];
    const down = Float32Array.from({ length: rank * inner }, random);
    const up = Float32Array.from({ length: out * rank }, random);
    lora.set(`${key}.lora_down.weight`, { shape: [rank, ...target.shape.slice(1)], data: down });
    lora.set(`${key}.lora_up.weight`, { shape: [out, rank, ...target.shape.slice(2).map(() => 1)], data: up });
    lora.set(`${key}.alpha`, { shape: [], data: Float32Array.of(alpha) });
    const merged = Float32Array.from(target.data);
    for (let row = 0; row < out; row++) {
      for (let column = 0; column < inner; column++) {
        let sum = 0;
        for (let r = 0; r < rank; r++) sum += up[row * rank + r] * down[r * inner + column];
        merged[row * inner + column] += weight * (alpha / rank) * sum;
      }
    }
    tensors.set(`${module}.weight`, { shape: target.shape, data: merged });
  }
  writeAll(loraPath, lora);
  mkdirSync(mergedFolder, { recursive: true });
  for (const entry of readdirSync(folder)) {
    const tensors = components.get(entry);
    if (!tensors) {
      symlinkSync(join(folder, entry), join(mergedFolder, entry));
      continue;
    }
    mkdirSync(join(mergedFolder, entry));
    copyFileSync(join(folder, entry, 'config.json'), join(mergedFolder, entry, 'config.json'));
    writeAll(join(mergedFolder, entry, entry === 'unet' ? 'diffusion_pytorch_model.safetensors' : 'model.safetensors'), tensors);
  }
}
