import { existsSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import {
  type ClipTextConfig,
  type ConfigJson,
  type UNetConfig,
  type VaeConfig,
  resolveClipTextConfig,
  resolveUnetConfig,
  resolveVaeConfig,
} from '../graphs/configs.ts';
import { textEncoderParameters, unetParameters, vaeParameters } from '../graphs/components.ts';
import type { ParameterSpec } from '../graphs/onnx-graph.ts';
import { SD1_SCHEDULER, SD1_TEXT_ENCODER, SD1_UNET, SD2_SCHEDULER, SD2_TEXT_ENCODER, SD2_UNET, SD_VAE } from '../graphs/stable-diffusion.ts';
import { CheckpointWeights, type KeyMap } from './checkpoint-weights.ts';
import { openComponentWeights, readComponentConfig, readJsonObject } from './component-folder.ts';
import { type TensorRef, deprecatedVaeAttentionKey, openAiClipLdmKey, openClipKey, unetLdmKey, vaeLdmKey } from './ldm-keys.ts';
import { isPickleName, pickleRefusal, SafetensorsFile, SafetensorsSet } from '../models/safetensors.ts';

/*
 * What an import will build, worked out and checked before anything is written: each component's config and
 * where its weights are, the scheduler config and the tokenizer. Sources: a diffusers folder, a single-file
 * checkpoint with LDM names (SD 1.x / 2.x), or a lone VAE (folder or file).
 */

export type Prediction = 'epsilon' | 'v_prediction';

export interface ComponentPlan<Config> {
  config: Config;
  weights: CheckpointWeights;
}

export interface PipelinePlan {
  kind: 'pipeline';
  /** e.g. "diffusers folder models/foo" or "single-file checkpoint foo.safetensors (SD 1.x)". */
  description: string;
  family: 'SD 1.x' | 'SD 2.x' | undefined;
  textEncoder: ComponentPlan<ClipTextConfig>;
  unet: ComponentPlan<UNetConfig>;
  /** The source's own VAE; not read when another replaces it. */
  vae: ComponentPlan<VaeConfig> | undefined;
  scheduler: ConfigJson;
  /** A folder holding the CLIP tokenizer files, or undefined when they must come from elsewhere. */
  tokenizerDir: string | undefined;
  /** SD 2.x tokenizers pad with "!"; needed to write tokenizer configs when none come with the source. */
  padToken: '<|endoftext|>' | '!';
  notes: string[];
  close(): void;
}

export interface VaePlan {
  kind: 'vae';
  description: string;
  vae: ComponentPlan<VaeConfig>;
  notes: string[];
  close(): void;
}

export type ImportPlan = PipelinePlan | VaePlan;

export interface PlanOptions {
  /** A diffusers folder whose config files describe a single-file checkpoint (and give its tokenizer and scheduler). */
  configDir?: string;
  /** Overrides the prediction type the scheduler config gives (or that a single file implies). */
  prediction?: Prediction;
  /** Another VAE for the model: the source's own is then neither needed nor read. */
  vae?: string;
}

const identity: KeyMap = (name) => [{ key: name }];

/** Plans the import of `source`: a diffusers folder, a component folder (a VAE), or a .safetensors file. */
export function planImport(source: string, options: PlanOptions = {}): ImportPlan {
  const path = resolve(source);
  if (!existsSync(path)) throw new Error(`${source} does not exist`);
  if (statSync(path).isDirectory()) {
    if (existsSync(join(path, 'model_index.json'))) return planDiffusersFolder(path, options);
    if (existsSync(join(path, 'config.json'))) return planVaeFolder(path);
    throw new Error(`${source} is neither a diffusers model folder (no model_index.json) nor a VAE folder (no config.json)`);
  }
  if (isPickleName(path)) throw pickleRefusal(path);
  if (!/\.safetensors$/i.test(path)) throw new Error(`${basename(path)} is not a .safetensors file, a diffusers folder or a VAE folder`);
  const file = SafetensorsFile.open(path);
  try {
    const tensors = new SafetensorsSet([file]);
    return isVaeOnly(tensors) ? planVaeFile(tensors, path, options) : planSingleFile(tensors, path, options);
  } catch (error) {
    file.close();
    throw error;
  }
}

/** A VAE to replace a model's own: a VAE folder, or a .safetensors file of VAE weights (or a full checkpoint's). */
export function planVae(source: string, options: PlanOptions = {}): VaePlan {
  const path = resolve(source);
  if (!existsSync(path)) throw new Error(`--vae ${source} does not exist`);
  if (statSync(path).isDirectory()) {
    const vaeFolder = existsSync(join(path, 'vae', 'config.json')) ? join(path, 'vae') : path;
    return planVaeFolder(vaeFolder);
  }
  if (isPickleName(path)) throw pickleRefusal(path);
  const file = SafetensorsFile.open(path);
  try {
    return planVaeFile(new SafetensorsSet([file]), path, options);
  } catch (error) {
    file.close();
    throw error;
  }
}

function withPrediction(scheduler: ConfigJson, prediction: Prediction | undefined): ConfigJson {
  return prediction ? { ...scheduler, prediction_type: prediction } : scheduler;
}

function planDiffusersFolder(dir: string, options: PlanOptions): PipelinePlan {
  const index = readJsonObject(join(dir, 'model_index.json'), 'model_index.json');
  if (index.text_encoder_2 || (index.unet === undefined && index.transformer !== undefined)) {
    throw new Error(`${basename(dir)} is not an SD 1.x / 2.x pipeline (${String(index._class_name)}); SDXL and other architectures are not supported yet`);
  }
  const declared = (name: string) => Array.isArray(index[name]) && (index[name] as unknown[])[0] !== null;
  const needed = ['text_encoder', 'tokenizer', 'unet', ...(options.vae ? [] : ['vae']), 'scheduler'];
  const missing = needed.filter((name) => !declared(name) || !existsSync(join(dir, name)));
  if (missing.length > 0) throw new Error(`${basename(dir)} is missing components: ${missing.join(', ')} (a diffusers Stable Diffusion folder has text_encoder, tokenizer, unet, vae and scheduler)`);

  const opened: SafetensorsSet[] = [];
  const close = () => opened.forEach((tensors) => tensors.close());
  try {
    const component = <C>(name: string, resolveConfig: (json: ConfigJson) => C, keys: KeyMap): ComponentPlan<C> => {
      const config = resolveConfig(readComponentConfig(join(dir, name), name));
      const tensors = openComponentWeights(join(dir, name), name);
      opened.push(tensors);
      return { config, weights: new CheckpointWeights(tensors, name, keys) };
    };
    const plan: PipelinePlan = {
      kind: 'pipeline',
      description: `diffusers folder ${basename(dir)}`,
      family: undefined,
      textEncoder: component('text_encoder', resolveClipTextConfig, identity),
      unet: component('unet', resolveUnetConfig, identity),
      vae: options.vae ? undefined : component('vae', resolveVaeConfig, (name) => [{ key: name }, ...optionalRef(deprecatedVaeAttentionKey(name))]),
      scheduler: withPrediction(readJsonObject(join(dir, 'scheduler', 'scheduler_config.json'), 'scheduler'), options.prediction),
      tokenizerDir: join(dir, 'tokenizer'),
      padToken: '<|endoftext|>',
      notes: [],
      close,
    };
    checkPipelineShapes(plan);
    return plan;
  } catch (error) {
    close();
    throw error;
  }
}

/** The VAE config of a --config folder: a diffusers folder's vae/, or an ONNX model folder's vae_decoder/. */
function configVae(dir: string): ConfigJson {
  return readComponentConfig(join(dir, existsSync(join(dir, 'vae', 'config.json')) ? 'vae' : 'vae_decoder'), 'vae');
}

function optionalRef(key: string | undefined): TensorRef[] {
  return key ? [{ key }] : [];
}

function planVaeFolder(dir: string): VaePlan {
  const config = resolveVaeConfig(readComponentConfig(dir, 'vae'));
  const tensors = openComponentWeights(dir, 'vae');
  try {
    const weights = new CheckpointWeights(tensors, 'vae', (name) => [{ key: name }, ...optionalRef(deprecatedVaeAttentionKey(name))]);
    const plan: VaePlan = { kind: 'vae', description: `${config._class_name} folder ${basename(dir)}`, vae: { config, weights }, notes: [], close: () => tensors.close() };
    checkShapes(vaeParameters(config), weights);
    return plan;
  } catch (error) {
    tensors.close();
    throw error;
  }
}

const LDM_UNET_PROBE = 'model.diffusion_model.input_blocks.0.0.weight';

/** A file of VAE weights alone: LDM names with or without `first_stage_model.`, or diffusers names. */
function isVaeOnly(tensors: SafetensorsSet): boolean {
  return !tensors.has(LDM_UNET_PROBE) && [...tensors.names].some((name) => /^(first_stage_model\.)?(encoder|decoder)\./.test(name));
}

function planVaeFile(tensors: SafetensorsSet, path: string, options: PlanOptions): VaePlan {
  const names = [...tensors.names];
  const config = resolveVaeConfig(options.configDir ? configVae(options.configDir) : SD_VAE);
  if (config._class_name !== 'AutoencoderKL') throw new Error('a single-file VAE must be an AutoencoderKL');
  const ldm = names.some((name) => /^(first_stage_model\.)?(encoder\.down\.|decoder\.up\.)/.test(name));
  // A VAE saved on its own (e.g. vae-ft-mse-840000-ema-pruned.safetensors) has the LDM names without the prefix.
  const bare = !names.some((name) => name.startsWith('first_stage_model.'));
  const keys: KeyMap = ldm
    ? (name) => optionalRef(bare ? vaeLdmKey(name, config)?.slice('first_stage_model.'.length) : vaeLdmKey(name, config))
    : (name) => [{ key: name }, ...optionalRef(deprecatedVaeAttentionKey(name))];
  const weights = new CheckpointWeights(tensors, 'vae', keys);
  checkShapes(vaeParameters(config), weights, options.configDir);
  return { kind: 'vae', description: `VAE file ${basename(path)}`, vae: { config, weights }, notes: [], close: () => tensors.close() };
}

/**
 * A single-file checkpoint with the original LDM names. Its family (SD 1.x: OpenAI CLIP under
 * cond_stage_model.transformer; SD 2.x: OpenCLIP under cond_stage_model.model) picks the text encoder's key
 * names and, without --config, the standard configs, which every tensor's shape must then match.
 */
function planSingleFile(tensors: SafetensorsSet, path: string, options: PlanOptions): PipelinePlan {
  const names = [...tensors.names];
  const name = basename(path);
  if (names.some((key) => key.startsWith('conditioner.embedders.'))) {
    throw new Error(`${name} is an SDXL checkpoint; SDXL is not supported yet (SD 1.x and 2.x are)`);
  }
  if (!tensors.has(LDM_UNET_PROBE)) {
    throw new Error(`${name}: unknown architecture (no Stable Diffusion U-Net, model.diffusion_model.*, in the file)`);
  }
  const inChannels = tensors.info(LDM_UNET_PROBE)!.shape[1];
  if (inChannels !== 4 && !options.configDir) {
    throw new Error(`${name}: its U-Net takes ${inChannels} input channels (${inChannels === 9 ? 'an inpainting model' : 'not a text-to-image model'}), which is not supported`);
  }
  const sd1Prefix = ['cond_stage_model.transformer.text_model.', 'cond_stage_model.transformer.'].find((prefix) =>
    tensors.has(`${prefix}embeddings.token_embedding.weight`),
  );
  const isSd2 = tensors.has('cond_stage_model.model.token_embedding.weight');
  if (!sd1Prefix && !isSd2) throw new Error(`${name}: unknown architecture (no CLIP text encoder, cond_stage_model.*, in the file)`);
  if (!options.vae && !names.some((key) => key.startsWith('first_stage_model.'))) {
    throw new Error(`${name} has no VAE (first_stage_model.*): give the model one with --vae FILE (e.g. the VAE its page recommends)`);
  }
  const family = isSd2 ? 'SD 2.x' : 'SD 1.x';

  const notes: string[] = [];
  const explicitV = tensors.has('v_pred');
  let prediction: Prediction = options.prediction ?? (explicitV ? 'v_prediction' : isSd2 ? 'v_prediction' : 'epsilon');
  if (isSd2 && !options.prediction && !explicitV) {
    notes.push('SD 2.x checkpoint: assuming a 768-v model (v-prediction), as diffusers does; pass --prediction epsilon for a 512 "base" model');
  }

  let textJson: ConfigJson;
  let unetJson: ConfigJson;
  let vaeJson: ConfigJson;
  let scheduler: ConfigJson;
  let tokenizerDir: string | undefined;
  if (options.configDir) {
    const dir = options.configDir;
    if (!existsSync(join(dir, 'unet', 'config.json'))) throw new Error(`--config ${dir} is not a model folder (no unet/config.json)`);
    textJson = readComponentConfig(join(dir, 'text_encoder'), 'text_encoder');
    unetJson = readComponentConfig(join(dir, 'unet'), 'unet');
    vaeJson = configVae(dir);
    scheduler = readJsonObject(join(dir, 'scheduler', 'scheduler_config.json'), 'scheduler');
    if (!options.prediction) prediction = (scheduler.prediction_type as Prediction | undefined) ?? prediction;
    tokenizerDir = existsSync(join(dir, 'tokenizer', 'vocab.json')) ? join(dir, 'tokenizer') : undefined;
  } else {
    textJson = isSd2 ? SD2_TEXT_ENCODER : SD1_TEXT_ENCODER;
    unetJson = isSd2 ? { ...SD2_UNET, sample_size: prediction === 'v_prediction' ? 96 : 64 } : SD1_UNET;
    vaeJson = SD_VAE;
    scheduler = isSd2 ? SD2_SCHEDULER : SD1_SCHEDULER;
  }
  const textConfig = resolveClipTextConfig(textJson);
  const unetConfig = resolveUnetConfig(unetJson);
  const vaeConfig = resolveVaeConfig(vaeJson);
  if (vaeConfig._class_name !== 'AutoencoderKL') throw new Error('the VAE of a single-file checkpoint is an AutoencoderKL; --config gives another');

  const textKeys: KeyMap = isSd2
    ? (key) => [openClipKey(key, textConfig.hidden_size)].filter((ref): ref is TensorRef => ref !== undefined)
    : (key) => [openAiClipLdmKey(key.replace(/^text_model\./, ''), sd1Prefix)];
  const plan: PipelinePlan = {
    kind: 'pipeline',
    description: `single-file checkpoint ${name} (${family})`,
    family,
    textEncoder: { config: textConfig, weights: new CheckpointWeights(tensors, 'text_encoder', textKeys) },
    unet: { config: unetConfig, weights: new CheckpointWeights(tensors, 'unet', (key) => optionalRef(unetLdmKey(key, unetConfig))) },
    vae: options.vae ? undefined : { config: vaeConfig, weights: new CheckpointWeights(tensors, 'vae', (key) => optionalRef(vaeLdmKey(key, vaeConfig))) },
    scheduler: { ...scheduler, prediction_type: prediction },
    tokenizerDir,
    padToken: isSd2 ? '!' : '<|endoftext|>',
    notes,
    close: () => tensors.close(),
  };
  checkPipelineShapes(plan, options.configDir);
  return plan;
}

function checkPipelineShapes(plan: PipelinePlan, configDir?: string): void {
  checkShapes(textEncoderParameters(plan.textEncoder.config), plan.textEncoder.weights, configDir);
  checkShapes(unetParameters(plan.unet.config), plan.unet.weights, configDir);
  if (plan.vae) checkShapes(vaeParameters(plan.vae.config), plan.vae.weights, configDir);
}

/**
 * Every parameter the graphs will read must be in the weights with its shape, checked from the headers alone
 * so a mismatch is reported before minutes of writing.
 */
function checkShapes(parameters: Map<string, ParameterSpec>, weights: CheckpointWeights, configDir?: string): void {
  for (const [name, { shape }] of parameters) {
    const problem = weights.check(name, shape);
    if (problem) {
      const hint = configDir ? '' : '; for a non-standard architecture pass --config DIR (a diffusers folder whose config files describe it)';
      throw new Error(`${problem}${hint}`);
    }
  }
}
