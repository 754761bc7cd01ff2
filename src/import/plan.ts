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
import {
  SDXL_SCHEDULER,
  SDXL_TEXT_ENCODER,
  SDXL_TEXT_ENCODER_2,
  SDXL_TURBO_SAMPLE_SIZE,
  SDXL_TURBO_SCHEDULER,
  SDXL_UNET,
  SDXL_VAE,
} from '../graphs/stable-diffusion-xl.ts';
import { CheckpointWeights, type KeyMap } from './checkpoint-weights.ts';
import { openComponentWeights, readComponentConfig, readJsonObject } from './component-folder.ts';
import { type TensorRef, deprecatedVaeAttentionKey, openAiClipLdmKey, openClipKey, unetLdmKey, vaeLdmKey } from './ldm-keys.ts';
import { isPickleName, pickleRefusal, SafetensorsFile, SafetensorsSet } from '../models/safetensors.ts';

/*
 * What an import will build, worked out and checked before anything is written: each component's config and
 * where its weights are, the scheduler config and the tokenizer. Sources: a diffusers folder, a single-file
 * checkpoint with LDM names (SD 1.x / 2.x / XL), or a lone VAE (folder or file).
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
  family: 'SD 1.x' | 'SD 2.x' | 'SDXL' | undefined;
  textEncoder: ComponentPlan<ClipTextConfig>;
  /** SDXL's second text encoder (OpenCLIP bigG with its projection); its tokenizer pads with "!". */
  textEncoder2?: ComponentPlan<ClipTextConfig>;
  unet: ComponentPlan<UNetConfig>;
  /** The source's own VAE; not read when another replaces it. */
  vae: ComponentPlan<VaeConfig> | undefined;
  scheduler: ConfigJson;
  /** A folder holding the CLIP tokenizer files, or undefined when they must come from elsewhere. */
  tokenizerDir: string | undefined;
  /** SD 2.x tokenizers pad with "!"; needed to write tokenizer configs when none come with the source. */
  padToken: '<|endoftext|>' | '!';
  /** The folder of SDXL's second tokenizer, when the source has one (else the first's files, padding with "!"). */
  tokenizer2Dir?: string;
  /** model_index.json settings the pipeline reads (SDXL: force_zeros_for_empty_prompt). */
  pipelineConfig: ConfigJson;
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
  const declared = (name: string) => Array.isArray(index[name]) && (index[name] as unknown[])[0] !== null;
  if (index.unet === undefined && index.transformer !== undefined) {
    throw new Error(`${basename(dir)} is not a Stable Diffusion pipeline (${String(index._class_name)}); only U-Net models (SD 1.x, 2.x, XL) are supported`);
  }
  const xl = declared('text_encoder_2');
  if (xl && (!declared('text_encoder') || index.requires_aesthetics_score === true)) {
    throw new Error(`${basename(dir)} is an SDXL refiner: it refines images and draws none from a prompt alone, which is not supported (use an SDXL base model)`);
  }
  const components = ['text_encoder', 'tokenizer', ...(xl ? ['text_encoder_2', 'tokenizer_2'] : []), 'unet', 'vae', 'scheduler'];
  const needed = components.filter((name) => name !== 'vae' || !options.vae);
  const missing = needed.filter((name) => !declared(name) || !existsSync(join(dir, name)));
  if (missing.length > 0) throw new Error(`${basename(dir)} is missing components: ${missing.join(', ')} (a diffusers ${xl ? 'SDXL' : 'Stable Diffusion'} folder has ${components.join(', ')})`);

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
      description: `diffusers folder ${basename(dir)}${xl ? ' (SDXL)' : ''}`,
      family: xl ? 'SDXL' : undefined,
      textEncoder: component('text_encoder', resolveClipTextConfig, identity),
      ...(xl ? { textEncoder2: component('text_encoder_2', resolveClipTextConfig, identity) } : {}),
      unet: component('unet', resolveUnetConfig, identity),
      vae: options.vae ? undefined : component('vae', resolveVaeConfig, (name) => [{ key: name }, ...optionalRef(deprecatedVaeAttentionKey(name))]),
      scheduler: withPrediction(readJsonObject(join(dir, 'scheduler', 'scheduler_config.json'), 'scheduler'), options.prediction),
      tokenizerDir: join(dir, 'tokenizer'),
      padToken: '<|endoftext|>',
      ...(xl ? { tokenizer2Dir: join(dir, 'tokenizer_2') } : {}),
      pipelineConfig: xl ? { force_zeros_for_empty_prompt: index.force_zeros_for_empty_prompt ?? true } : {},
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

/** An OpenCLIP text model's tensors under `prefix` (SD 2.x's and SDXL's second text encoder). */
function openClipKeys(hiddenSize: number, prefix: string): KeyMap {
  return (name) => [openClipKey(name, hiddenSize, prefix)].filter((ref): ref is TensorRef => ref !== undefined);
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
  if (!tensors.has(LDM_UNET_PROBE)) {
    throw new Error(`${name}: unknown architecture (no Stable Diffusion U-Net, model.diffusion_model.*, in the file)`);
  }
  const inChannels = tensors.info(LDM_UNET_PROBE)!.shape[1];
  if (inChannels !== 4 && !options.configDir) {
    throw new Error(`${name}: its U-Net takes ${inChannels} input channels (${inChannels === 9 ? 'an inpainting model' : 'not a text-to-image model'}), which is not supported`);
  }
  if (!options.vae && !names.some((key) => key.startsWith('first_stage_model.'))) {
    throw new Error(`${name} has no VAE (first_stage_model.*): give the model one with --vae FILE (e.g. the VAE its page recommends)`);
  }
  if (names.some((key) => key.startsWith('conditioner.embedders.'))) return planSdxlSingleFile(tensors, name, options);
  const sd1Prefix = ['cond_stage_model.transformer.text_model.', 'cond_stage_model.transformer.'].find((prefix) =>
    tensors.has(`${prefix}embeddings.token_embedding.weight`),
  );
  const isSd2 = tensors.has('cond_stage_model.model.token_embedding.weight');
  if (!sd1Prefix && !isSd2) throw new Error(`${name}: unknown architecture (no CLIP text encoder, cond_stage_model.*, in the file)`);
  const family = isSd2 ? 'SD 2.x' : 'SD 1.x';

  const notes: string[] = [];
  const explicitV = tensors.has('v_pred');
  let prediction: Prediction = options.prediction ?? (explicitV ? 'v_prediction' : isSd2 ? 'v_prediction' : 'epsilon');
  if (isSd2 && !options.prediction && !explicitV) {
    notes.push('SD 2.x checkpoint: assuming a 768-v model (v-prediction), as diffusers does; pass --prediction epsilon for a 512 "base" model');
  }

  const given = options.configDir ? readConfigFolder(options.configDir, false) : undefined;
  if (given && !options.prediction) prediction = (given.scheduler.prediction_type as Prediction | undefined) ?? prediction;
  const textJson = given?.textEncoder ?? (isSd2 ? SD2_TEXT_ENCODER : SD1_TEXT_ENCODER);
  const unetJson = given?.unet ?? (isSd2 ? { ...SD2_UNET, sample_size: prediction === 'v_prediction' ? 96 : 64 } : SD1_UNET);
  const vaeJson = given?.vae ?? SD_VAE;
  const scheduler = given?.scheduler ?? (isSd2 ? SD2_SCHEDULER : SD1_SCHEDULER);
  const tokenizerDir = given?.tokenizerDir;
  const textConfig = resolveClipTextConfig(textJson);
  const unetConfig = resolveUnetConfig(unetJson);
  const vaeConfig = resolveVaeConfig(vaeJson);
  if (vaeConfig._class_name !== 'AutoencoderKL') throw new Error('the VAE of a single-file checkpoint is an AutoencoderKL; --config gives another');

  const textKeys: KeyMap = isSd2 ? openClipKeys(textConfig.hidden_size, 'cond_stage_model.model.') : (key) => [openAiClipLdmKey(key.replace(/^text_model\./, ''), sd1Prefix)];
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
    pipelineConfig: {},
    notes,
    close: () => tensors.close(),
  };
  checkPipelineShapes(plan, options.configDir);
  return plan;
}

const SDXL_CLIP_L_PREFIX = 'conditioner.embedders.0.transformer.text_model.';
const SDXL_CLIP_G_PREFIX = 'conditioner.embedders.1.model.';

/**
 * An SDXL single file (SGM names): CLIP ViT-L under conditioner.embedders.0.transformer, OpenCLIP bigG (q, k and v
 * fused into in_proj, the projection stored transposed) under conditioner.embedders.1.model, the U-Net under
 * model.diffusion_model (the text_time embedding as label_emb), the VAE under first_stage_model. A file named
 * "turbo" gets SDXL-Turbo's size and scheduler.
 */
function planSdxlSingleFile(tensors: SafetensorsSet, name: string, options: PlanOptions): PipelinePlan {
  if (!tensors.has(`${SDXL_CLIP_L_PREFIX}embeddings.token_embedding.weight`) || !tensors.has(`${SDXL_CLIP_G_PREFIX}token_embedding.weight`)) {
    const refiner = tensors.has('conditioner.embedders.0.model.token_embedding.weight');
    throw new Error(
      refiner
        ? `${name} is an SDXL refiner: it refines images and draws none from a prompt alone, which is not supported (use an SDXL base model)`
        : `${name}: unknown SDXL layout (no CLIP ViT-L under conditioner.embedders.0 and OpenCLIP under conditioner.embedders.1)`,
    );
  }
  const notes: string[] = [];
  const given = options.configDir ? readConfigFolder(options.configDir, true) : undefined;
  const turbo = !given && /turbo/i.test(name);
  if (turbo) notes.push('SDXL-Turbo (by its name): 512x512, Euler a over trailing timesteps, 1-4 steps without guidance');
  const prediction: Prediction = options.prediction ?? (tensors.has('v_pred') ? 'v_prediction' : ((given?.scheduler.prediction_type as Prediction | undefined) ?? 'epsilon'));
  const textConfig = resolveClipTextConfig(given?.textEncoder ?? SDXL_TEXT_ENCODER);
  const text2Config = resolveClipTextConfig(given?.textEncoder2 ?? SDXL_TEXT_ENCODER_2);
  const unetConfig = resolveUnetConfig(given?.unet ?? (turbo ? { ...SDXL_UNET, sample_size: SDXL_TURBO_SAMPLE_SIZE } : SDXL_UNET));
  const vaeConfig = resolveVaeConfig(given?.vae ?? SDXL_VAE);
  if (vaeConfig._class_name !== 'AutoencoderKL') throw new Error('the VAE of a single-file checkpoint is an AutoencoderKL; --config gives another');
  const scheduler = given?.scheduler ?? (turbo ? SDXL_TURBO_SCHEDULER : SDXL_SCHEDULER);

  const plan: PipelinePlan = {
    kind: 'pipeline',
    description: `single-file checkpoint ${name} (SDXL)`,
    family: 'SDXL',
    textEncoder: { config: textConfig, weights: new CheckpointWeights(tensors, 'text_encoder', (key) => [openAiClipLdmKey(key.replace(/^text_model\./, ''), SDXL_CLIP_L_PREFIX)]) },
    textEncoder2: {
      config: text2Config,
      weights: new CheckpointWeights(tensors, 'text_encoder_2', openClipKeys(text2Config.hidden_size, SDXL_CLIP_G_PREFIX)),
    },
    unet: { config: unetConfig, weights: new CheckpointWeights(tensors, 'unet', (key) => optionalRef(unetLdmKey(key, unetConfig))) },
    vae: options.vae ? undefined : { config: vaeConfig, weights: new CheckpointWeights(tensors, 'vae', (key) => optionalRef(vaeLdmKey(key, vaeConfig))) },
    scheduler: { ...scheduler, prediction_type: prediction },
    tokenizerDir: given?.tokenizerDir,
    padToken: '<|endoftext|>',
    ...(given?.tokenizer2Dir ? { tokenizer2Dir: given.tokenizer2Dir } : {}),
    pipelineConfig: { force_zeros_for_empty_prompt: given?.modelIndex?.force_zeros_for_empty_prompt ?? true },
    notes,
    close: () => tensors.close(),
  };
  checkPipelineShapes(plan, options.configDir);
  return plan;
}

/** The config files of a --config folder: a diffusers folder of the same architecture (or an ONNX model folder). */
function readConfigFolder(dir: string, xl: boolean) {
  if (!existsSync(join(dir, 'unet', 'config.json'))) throw new Error(`--config ${dir} is not a model folder (no unet/config.json)`);
  const tokenizer = (folder: string) => (existsSync(join(dir, folder, 'vocab.json')) ? join(dir, folder) : undefined);
  return {
    textEncoder: readComponentConfig(join(dir, 'text_encoder'), 'text_encoder'),
    textEncoder2: xl ? readComponentConfig(join(dir, 'text_encoder_2'), 'text_encoder_2') : undefined,
    unet: readComponentConfig(join(dir, 'unet'), 'unet'),
    vae: configVae(dir),
    scheduler: readJsonObject(join(dir, 'scheduler', 'scheduler_config.json'), 'scheduler'),
    modelIndex: existsSync(join(dir, 'model_index.json')) ? readJsonObject(join(dir, 'model_index.json'), 'model_index.json') : undefined,
    tokenizerDir: tokenizer('tokenizer'),
    tokenizer2Dir: xl ? tokenizer('tokenizer_2') : undefined,
  };
}

function checkPipelineShapes(plan: PipelinePlan, configDir?: string): void {
  checkShapes(textEncoderParameters(plan.textEncoder.config), plan.textEncoder.weights, configDir);
  if (plan.textEncoder2) checkShapes(textEncoderParameters(plan.textEncoder2.config), plan.textEncoder2.weights, configDir);
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
