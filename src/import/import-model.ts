import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { textEncoderParameters, unetParameters, vaeParameters, writeTextEncoder, writeUNet, writeVae } from '../graphs/components.ts';
import type { ConfigJson } from '../graphs/configs.ts';
import type { AttentionKind, ParameterSpec, Precision } from '../graphs/onnx-graph.ts';
import { type ComponentName, clipTokenizerConfigFiles, jsonFile, onnxPipelineIndex } from '../graphs/stable-diffusion.ts';
import { EXTERNAL_DATA_FILE, countValues } from '../graphs/write-graph.ts';
import { checkModelName, defaultModelsDir } from '../models/installed.ts';
import { placeModel } from '../models/pull.ts';
import { FUSED_ATTENTION_MARKER, IMPORT_MANIFEST_FILE, type ImportManifest } from '../pipeline/model-config.ts';
import { resolveSchedulerName } from '../schedulers/index.ts';
import { unetLdmKey } from './ldm-keys.ts';
import { type LoraMatch, type LoraRequest, LoraSet } from './lora.ts';
import { type ImportPlan, type PipelinePlan, type PlanOptions, planImport, planVae } from './plan.ts';

export interface ImportRequest extends PlanOptions {
  /** A diffusers folder, a VAE folder, or a .safetensors file. */
  source: string;
  /** Folder name under the models directory; default from the source's name. */
  name?: string;
  modelsDir?: string;
  /** fp32 (default) or fp16 graphs (for GPUs). */
  precision?: Precision;
  /** Another VAE (folder or .safetensors) in place of the model's own. */
  vae?: string;
  loras?: LoraRequest[];
  /**
   * The model's own scheduler (a name from the scheduler table): its config is the source's with this class and
   * the name's settings. An LCM-LoRA among the LoRAs implies LCM.
   */
  scheduler?: string;
  /** Replace an installed model of the same name. */
  force?: boolean;
  /** Written into the manifest: where the source came from when it was downloaded (a hub repository). */
  origin?: ImportManifest['origin'];
}

export interface ImportOptions {
  onEvent?: (event: ImportEvent) => void;
  /**
   * A folder with CLIP's vocab.json and merges.txt, for a single-file checkpoint imported without --config
   * (the file has no tokenizer). Without it such an import is refused with how to give one.
   */
  tokenizerFor?: (plan: PipelinePlan) => Promise<string>;
}

export type ImportEvent =
  | { type: 'plan'; description: string; notes: string[]; loras: LoraMatch[] }
  | { type: 'note'; text: string }
  | { type: 'component-start'; component: string; bytes: number }
  | { type: 'bytes'; component: string; bytes: number }
  | { type: 'component-done'; component: string };

export interface ImportResult {
  name: string;
  dir: string;
  kind: ImportPlan['kind'];
  description: string;
  bytes: number;
  loras: LoraMatch[];
}

const STAGING_SUFFIX = '.importing';

/** A model name from a source path: its base name without extension, reduced to the characters a name may have. */
export function defaultImportName(source: string): string {
  const base = basename(source.replace(/[\\/]+$/, '')).replace(/\.safetensors$/i, '');
  const name = base.replace(/[^\w.-]+/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 64);
  return name || 'imported-model';
}

/**
 * Imports a PyTorch Stable Diffusion model into `<modelsDir>/<name>` in the diffusers ONNX layout the pipeline
 * loads. Everything is checked before writing (configs, every tensor's shape, the LoRAs' fit); the graphs are
 * written into a hidden staging folder, streamed tensor by tensor, and the folder is renamed into place only
 * when complete, so a failed or interrupted import leaves nothing that looks like a model.
 */
export async function importModel(request: ImportRequest, options: ImportOptions = {}): Promise<ImportResult> {
  const name = request.name ?? defaultImportName(request.source);
  checkModelName(name);
  const modelsDir = request.modelsDir ?? defaultModelsDir();
  const target = join(modelsDir, name);
  if (existsSync(target) && !request.force) throw new Error(`${target} already exists. Pass --force to replace it, or --name to import under another name.`);
  if (request.precision !== undefined && request.precision !== 'fp32' && request.precision !== 'fp16') throw new Error(`precision must be fp32 or fp16 (got ${request.precision})`);

  const plan = planImport(request.source, request);
  const vaePlan = request.vae ? openReplacementVae(plan, request) : undefined;
  try {
    if (plan.kind === 'vae' && (request.loras?.length ?? 0) > 0) throw new Error('LoRAs change a model, not a VAE: import the model with --lora');
    if (plan.kind === 'vae' && request.scheduler !== undefined) throw new Error('--scheduler sets a model\'s scheduler; the source is a VAE');
    const loras = plan.kind === 'pipeline' ? matchLoras(plan, request.loras ?? []) : undefined;
    const scheduler = plan.kind === 'pipeline' ? schedulerFor(plan, request) : undefined;
    const emit = options.onEvent ?? (() => {});
    // A downloaded source is named by where it came from, not by the folder it was downloaded to.
    const description = request.origin ? `${request.origin.repo} (PyTorch ${plan.kind === 'vae' ? 'VAE' : 'weights'})` : plan.description;
    emit({ type: 'plan', description, notes: [...plan.notes, ...(vaePlan?.notes ?? []), ...(scheduler?.note ? [scheduler.note] : [])], loras: loras?.matches ?? [] });
    const tokenizerDir = plan.kind === 'pipeline' ? await tokenizerFor(plan, modelsDir, options, emit) : undefined;

    const staging = join(modelsDir, `.${name}${STAGING_SUFFIX}`);
    await rm(staging, { recursive: true, force: true });
    await mkdir(staging, { recursive: true });
    try {
      const precision = request.precision ?? 'fp32';
      // onnxruntime's CPU MultiHeadAttention is float32 only: fp16 graphs (for GPUs) keep attention as every provider runs it.
      const attention: AttentionKind = precision === 'fp32' ? 'fused' : 'unfused';
      const common = (component: string) => ({
        precision,
        attention,
        externalDataFile: EXTERNAL_DATA_FILE,
        onParameter: (_: string, bytes: number) => emit({ type: 'bytes', component, bytes }),
      });
      const bytesOf = (parameters: Map<string, ParameterSpec>, written: Precision = precision) => countValues(parameters) * (written === 'fp16' ? 2 : 4);
      let bytes = 0;
      const step = async (component: string, total: number, write: () => Promise<{ bytes: number }>) => {
        emit({ type: 'component-start', component, bytes: total });
        bytes += (await write()).bytes;
        emit({ type: 'component-done', component });
      };

      const vae = (vaePlan?.vae ?? plan.vae)!;
      if (plan.kind === 'pipeline') {
        const { textEncoder, textEncoder2, unet } = plan;
        // SDXL conditions on both encoders' penultimate layer (hidden_states[-2]).
        const penultimateHiddenState = textEncoder2 !== undefined;
        for (const [component, encoder] of [['text_encoder', textEncoder], ['text_encoder_2', textEncoder2]] as const) {
          if (!encoder) continue;
          await step(component, bytesOf(textEncoderParameters(encoder.config)), () =>
            writeTextEncoder(join(staging, component), encoder.config, { ...common(component), weights: loras!.merged(component, encoder.weights), inputIdsType: 'int32', penultimateHiddenState }),
          );
        }
        await step('unet', bytesOf(unetParameters(unet.config)), () =>
          writeUNet(join(staging, 'unet'), unet.config, { ...common('unet'), weights: loras!.merged('unet', unet.weights), timestepType: 'float32', timestepShape: 'batch' }),
        );
      }
      // SDXL's VAE overflows in float16: diffusers' SDXL pipeline upcasts a VAE whose config says force_upcast.
      const vaePrecision = plan.kind === 'pipeline' && plan.textEncoder2 && vae.config.force_upcast ? 'fp32' : precision;
      await step('vae', bytesOf(vaeParameters(vae.config), vaePrecision), () =>
        writeVae(staging, vae.config, { ...common('vae'), precision: vaePrecision, weights: vae.weights }),
      );
      if (plan.kind === 'pipeline') await writePipelineFiles(staging, plan, scheduler!.config, tokenizerDir!, request, attention);

      const manifest: ImportManifest = {
        source: request.origin?.repo ?? request.source,
        ...(request.origin ? { origin: request.origin } : {}),
        description,
        kind: plan.kind,
        precision,
        attention,
        ...(scheduler ? { prediction: String(scheduler.config.prediction_type ?? 'epsilon') } : {}),
        ...(vaePlan ? { vae: { source: request.vae!, description: vaePlan.description } } : {}),
        loras: (loras?.matches ?? []).map(({ name: loraName, weight }) => ({ name: loraName, weight })),
        importedAt: new Date().toISOString(),
      };
      await writeFile(join(staging, IMPORT_MANIFEST_FILE), jsonFile(manifest));
      await placeModel(staging, target);
      return { name, dir: target, kind: plan.kind, description, bytes, loras: loras?.matches ?? [] };
    } catch (error) {
      await rm(staging, { recursive: true, force: true });
      throw error;
    }
  } finally {
    plan.close();
    vaePlan?.close();
  }
}

function openReplacementVae(plan: ImportPlan, request: ImportRequest) {
  if (plan.kind === 'vae') {
    plan.close();
    throw new Error('--vae replaces the VAE of a model; the source is a VAE itself');
  }
  try {
    return planVae(request.vae!, request);
  } catch (error) {
    plan.close();
    throw error;
  }
}

/**
 * The LoRAs matched against the text encoders' and U-Net's parameters (the U-Net's also under their LDM names).
 * kohya names SD 1.x/2.x's text encoder lora_te, SDXL's two lora_te1 and lora_te2.
 */
function matchLoras(plan: PipelinePlan, requests: readonly LoraRequest[]): LoraSet {
  const unetConfig = plan.unet.config;
  const xl = plan.textEncoder2 !== undefined;
  return new LoraSet(requests, [
    { component: 'text_encoder', parameters: textEncoderParameters(plan.textEncoder.config), kohyaPrefix: xl ? 'lora_te1' : 'lora_te', peftPrefix: 'text_encoder' },
    ...(plan.textEncoder2 ? [{ component: 'text_encoder_2', parameters: textEncoderParameters(plan.textEncoder2.config), kohyaPrefix: 'lora_te2', peftPrefix: 'text_encoder_2' }] : []),
    {
      component: 'unet',
      parameters: unetParameters(unetConfig),
      kohyaPrefix: 'lora_unet',
      peftPrefix: 'unet',
      alias: (module) => unetLdmKey(`${module}.weight`, unetConfig)?.replace(/^model\.diffusion_model\./, '').replace(/\.weight$/, ''),
    },
  ]);
}

/** LCM-LoRAs (latent-consistency/lcm-lora-*) are named for what they are; the weights alone do not tell. */
const LCM_LORA_NAME = /lcm/i;

/**
 * The scheduler config to write: the source's, or with --scheduler that class built from it (as diffusers'
 * `Class.from_config(config, **overrides)`). An LCM-LoRA turns the model into a few-step one sampled with LCM,
 * as diffusers' LCM-LoRA recipe does (`pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config)`).
 */
function schedulerFor(plan: PipelinePlan, request: ImportRequest): { config: ConfigJson; note?: string } {
  const lcmLora = (request.loras ?? []).find(({ path }) => LCM_LORA_NAME.test(basename(path)) || (/^pytorch_lora_weights\./.test(basename(path)) && LCM_LORA_NAME.test(basename(dirname(resolve(path))))));
  const name = request.scheduler ?? (lcmLora ? 'LCM' : undefined);
  if (name === undefined) return { config: plan.scheduler };
  const { className, overrides, name: shown } = resolveSchedulerName(name, plan.scheduler);
  const config = { ...plan.scheduler, ...overrides, _class_name: className };
  const note = request.scheduler === undefined ? `LCM-LoRA ${basename(lcmLora!.path)}: the model samples with LCM (about 4 steps, guidance 1-2)` : `scheduler: ${shown}`;
  return { config, note };
}

/** CLIP's vocabulary: every SD 1.x and 2.x tokenizer has these 49,408 entries and the same merges. */
const CLIP_VOCABULARY_SIZE = 49408;

/**
 * The tokenizer files for the plan: the source's own (or --config's); else, for a single file, CLIP's from a model
 * already installed beside it (it is the same for every SD 1.x and 2.x model), else what `options.tokenizerFor`
 * finds.
 */
async function tokenizerFor(plan: PipelinePlan, modelsDir: string, options: ImportOptions, emit: (event: ImportEvent) => void): Promise<string> {
  if (plan.tokenizerDir) return plan.tokenizerDir;
  for (const entry of existsSync(modelsDir) ? (await readdir(modelsDir)).sort() : []) {
    const dir = join(modelsDir, entry, 'tokenizer');
    if (entry.startsWith('.') || !existsSync(join(dir, 'merges.txt')) || !existsSync(join(dir, 'vocab.json'))) continue;
    const vocabulary = await readFile(join(dir, 'vocab.json'), 'utf8').then((text) => Object.keys(JSON.parse(text)).length, () => 0);
    if (vocabulary === CLIP_VOCABULARY_SIZE) {
      emit({ type: 'note', text: `tokenizer: CLIP's, from the installed model ${entry}` });
      return dir;
    }
  }
  if (options.tokenizerFor) return options.tokenizerFor(plan);
  throw new Error(`${plan.description} has no tokenizer: pass --config DIR (a diffusers folder of the same family, e.g. the model's original repository)`);
}

async function writePipelineFiles(staging: string, plan: PipelinePlan, scheduler: ConfigJson, tokenizerDir: string, request: ImportRequest, attention: AttentionKind): Promise<void> {
  const schedulerClass = String(scheduler._class_name ?? 'PNDMScheduler');
  const origin = request.origin?.repo ?? basename(request.source);
  const components: ComponentName[] = ['text_encoder', ...(plan.textEncoder2 ? ['text_encoder_2' as const] : []), 'unet', 'vae_decoder', 'vae_encoder'];
  await mkdir(join(staging, 'scheduler'), { recursive: true });
  await writeFile(join(staging, 'scheduler', 'scheduler_config.json'), jsonFile(scheduler));
  await writeFile(
    join(staging, 'model_index.json'),
    jsonFile(
      onnxPipelineIndex(schedulerClass, components, {
        _name_or_path: origin,
        ...plan.pipelineConfig,
        ...(attention === 'fused' ? { [FUSED_ATTENTION_MARKER]: true } : {}),
      }),
    ),
  );
  await copyTokenizer(tokenizerDir, join(staging, 'tokenizer'), plan.padToken);
  // SDXL's second tokenizer has the same vocabulary and pads with "!".
  if (plan.textEncoder2) await copyTokenizer(plan.tokenizer2Dir ?? tokenizerDir, join(staging, 'tokenizer_2'), '!', plan.tokenizer2Dir === undefined);
}

/** A CLIP tokenizer folder's files, with the configs for `padToken` where the source has none (or `newConfigs`). */
async function copyTokenizer(sourceDir: string, targetDir: string, padToken: PipelinePlan['padToken'], newConfigs = false): Promise<void> {
  await mkdir(targetDir, { recursive: true });
  for (const file of ['vocab.json', 'merges.txt']) {
    if (!existsSync(join(sourceDir, file))) throw new Error(`the tokenizer folder ${sourceDir} has no ${file}`);
  }
  const configs = clipTokenizerConfigFiles(padToken);
  const files = (await readdir(sourceDir)).filter((file) => /\.(json|txt)$/.test(file) && !(newConfigs && file in configs));
  for (const file of files) await copyFile(join(sourceDir, file), join(targetDir, file));
  for (const [file, contents] of Object.entries(configs)) {
    if (!files.includes(file)) await writeFile(join(targetDir, file), contents);
  }
}
