import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { EmbeddingLibrary } from '../models/embeddings.ts';
import { parseSeed, TorchGenerator } from '../random/torch-generator.ts';
import { createScheduler } from '../schedulers/index.ts';
import { checkModelRunsOn } from './export-operators.ts';
import { loadInitImage, MAX_INIT_IMAGE_PIXELS } from '../image/init-image.ts';
import { noisedImageLatents, timestepsForStrength } from './img2img.ts';
import { describeModel, readModelConfig, vaeName, type ModelConfig } from './model-config.ts';
import { LatentPreviewer } from './latent-preview.ts';
import { lcmGuidanceCondition } from './lcm.ts';
import type { ExecutionProvider, ModelLoadOptions, OnnxClock } from './onnx-model.ts';
import { readOnnxOutline } from './onnx-outline.ts';
import { PreviewSchedule, type PreviewOptions } from './preview-schedule.ts';
import { PromptEncoder, type PromptEncoderPart, type TokenizedPrompt } from './prompt-encoder.ts';
import { SDXL_TEXT_ENCODERS, withZeroNegative } from './sdxl-conditioning.ts';
import { SD_TEXT_ENCODERS, TextEncoder, type TextEmbedding } from './text-encoder.ts';
import { ClipTokenizer } from './tokenizer.ts';
import {
  REQUEST_LIMITS,
  type GenerateRequest,
  type GenerationSettings,
  type InitImage,
  type ModelInfo,
  type PromptSyntax,
  type StageTimings,
  type StepProgress,
} from './types.ts';
import { UNet, type LatentSize, type UNetConditioning } from './unet.ts';
import { VaeEncoder } from './vae-encoder.ts';
import { VaeDecoder, type ConvolutionLayout, type RgbImage } from './vae.ts';
import { freeMemoryBytes, NotEnoughMemoryError } from './work-space.ts';
import type { GpuFusions } from './gpu-fusion.ts';

export interface PipelineOptions {
  executionProvider?: ExecutionProvider;
  /** Fuse the U-Net's and VAE's attention on the CPU (default true; see attention-fusion.ts). */
  fuseAttention?: boolean;
  /** On the CPU, run fp16 graphs as their float32 copies, made once beside them (default true; see float32-graph.ts). */
  float32OnCpu?: boolean;
  /** On cuda and webgpu, rewrite the graphs into those providers' fused operators at load (see gpu-fusion.ts; default false). */
  gpuFusion?: boolean;
  /**
   * Run classifier-free guidance's two halves (negative and prompt) as two U-Net calls of batch 1 instead of one of
   * batch 2. Default: on the CPU, where the two calls take as long as the batch and hold half its activations
   * (0.38 GB less at peak for SDXL at 1024x1024, see BENCHMARKS.md); a GPU runs the batch in parallel.
   */
  sequentialGuidance?: boolean;
  /**
   * Fix the U-Net's and VAE decoder's input shapes to one image size, and the U-Net's batch to what `guidance` (on or
   * off) makes it, so a GPU provider can plan for one shape (onnxruntime's freeDimensionOverrides, done on the graph);
   * the pipeline then makes only that size. For benchmarks.
   */
  staticShape?: { width: number; height: number; guidance: boolean };
  /** Told the duration of every onnxruntime session.run, by model label ('text_encoder', 'unet', 'vae_decoder'). */
  onOnnxRun?: (label: string, ms: number) => void;
  /** A folder of textual-inversion embeddings (.safetensors), read again whenever its contents change. */
  embeddingsDir?: string;
  /** Decode with the VAE in this folder (e.g. an imported TAESD) instead of the model's own. */
  vaeDir?: string;
  /**
   * A tiny decoder (an AutoencoderTiny such as TAESD) loaded beside the model's own VAE: previews use it, and so do
   * requests for `decoder: 'tiny'`.
   */
  tinyVaeDir?: string;
  /** The memory this process can still get, asked before each image (default freeMemoryBytes; see checkWorkSpace). */
  freeMemory?: () => number;
}

export interface GenerateOptions extends GenerateRequest {
  signal?: AbortSignal;
  onStep?: (progress: StepProgress) => void;
  /** Pictures of the image forming, decoded every few steps (see PreviewSchedule). */
  preview?: PreviewOptions;
  /**
   * Conditioning made elsewhere, as diffusers' `prompt_embeds` / `negative_prompt_embeds`: `[77·k, width]` each,
   * the same length (the negative is used only with guidance), and for SDXL `pooled_prompt_embeds` /
   * `negative_pooled_prompt_embeds`. The prompts are then not encoded; they stay the settings' record of what was asked.
   */
  promptEmbeds?: { prompt: Float32Array; negative: Float32Array; width: number; pooled?: { prompt: Float32Array; negative: Float32Array } };
}

export interface GenerateOutput {
  image: RgbImage;
  settings: GenerationSettings;
  timings: StageTimings;
}

export class GenerationAbortedError extends Error {
  override name = 'AbortError';
  constructor() {
    super('Generation was cancelled');
  }
}

/**
 * Stable Diffusion in the diffusers ONNX layout, mirroring diffusers' StableDiffusionPipeline.__call__ (for a model
 * with two text encoders StableDiffusionXLPipeline's: see sdxl-conditioning.ts; given an init image,
 * StableDiffusionImg2ImgPipeline's).
 */
export class StableDiffusionPipeline {
  /** Loaded on the first img2img request: text-to-image never needs it. */
  private encoder: Promise<VaeEncoder | undefined> | undefined;

  private constructor(
    private readonly config: ModelConfig,
    private readonly prompts: PromptEncoder,
    private readonly embeddings: EmbeddingLibrary | undefined,
    private readonly textEncoders: readonly TextEncoder[],
    private readonly unet: UNet,
    private readonly vae: VaeDecoder,
    private readonly tinyVae: VaeDecoder | undefined,
    private readonly previewer: LatentPreviewer,
    private readonly sequentialGuidance: boolean,
    private readonly clock: OnnxClock,
    readonly info: ModelInfo,
    private readonly loadEncoder: () => Promise<VaeEncoder | undefined>,
    private readonly freeMemory: () => number,
  ) {}

  static async fromPretrained(dir: string, options: PipelineOptions = {}): Promise<StableDiffusionPipeline> {
    const executionProvider = options.executionProvider ?? 'cpu';
    const config = readModelConfig(dir);
    const clock: OnnxClock = { runMs: 0, onRun: options.onOnnxRun };
    await checkModelRunsOn(executionProvider, config, options.vaeDir);
    // Graphs the builder wrote fused have nothing to rewrite: skip reading them twice.
    const loadOptions: ModelLoadOptions = {
      executionProvider,
      clock,
      fuseAttention: (options.fuseAttention ?? true) && !config.builtFused,
      float32OnCpu: options.float32OnCpu ?? true,
      gpuFusion: options.gpuFusion,
    };
    const parts: PromptEncoderPart[] = [];
    for (const role of config.sdxl ? SDXL_TEXT_ENCODERS : SD_TEXT_ENCODERS) {
      parts.push({ tokenizer: await ClipTokenizer.fromDirectory(join(config.dir, role.tokenizer)), textEncoder: await TextEncoder.load(config.dir, loadOptions, role) });
    }
    const sequentialGuidance = options.sequentialGuidance ?? executionProvider === 'cpu';
    const shape = options.staticShape;
    const [height, width] = shape ? [shape.height / 8, shape.width / 8] : [];
    const unetBatch = shape?.guidance && !sequentialGuidance ? 2 : 1;
    const unet = await UNet.load(config.dir, {
      ...loadOptions,
      ...(shape && { inputDimensions: { sample: [unetBatch, undefined, height, width], encoder_hidden_states: [unetBatch, undefined, undefined] } }),
    });
    const { stridedNodes, float16Weights, inputs } = await readOnnxOutline(join(config.dir, 'unet', 'model.onnx'));
    const contextWidth = inputs.find((input) => input.name === 'encoder_hidden_states')?.shape[2];
    const description = describeModel(config, {
      fixedLatentSize: unet.fixedLatentSize,
      // The model's, as its files hold it (on the CPU an fp16 model runs as its float32 copy).
      precision: float16Weights ? 'fp16' : 'fp32',
      stridedNodes,
      fixedContextLength: unet.fixedContextLength,
      guidanceEmbedding: unet.timeCondition !== undefined,
      contextWidth: typeof contextWidth === 'number' && contextWidth > 0 ? contextWidth : undefined,
    });
    const vae = await VaeDecoder.load(
      options.vaeDir ?? config.dir,
      { ...loadOptions, ...(shape && { inputDimensions: { latent_sample: [1, undefined, height, width] } }) },
      description.nativeWidth * description.nativeHeight,
    );
    const tinyVae = options.tinyVaeDir ? await VaeDecoder.load(options.tinyVaeDir, loadOptions) : undefined;
    const previewer = new LatentPreviewer(tinyVae ?? (vae.isTiny ? vae : undefined), vae.scalingFactor);
    const vaeDir = options.vaeDir ?? config.dir;
    const info: ModelInfo = {
      ...description,
      // A VAE given at load encodes too: its own encoder, when it has one.
      ...(options.vaeDir ? { vae: vaeName(options.vaeDir), imageToImage: existsSync(join(vaeDir, 'vae_encoder', 'model.onnx')) } : {}),
      ...(options.tinyVaeDir ? { tinyDecoder: vaeName(options.tinyVaeDir) } : {}),
    };
    await previewer.warmUp({ width: info.nativeWidth / 8, height: info.nativeHeight / 8 });
    const prompts = new PromptEncoder(parts, info.maxPromptChunks);
    const embeddings = options.embeddingsDir === undefined ? undefined : new EmbeddingLibrary(options.embeddingsDir);
    const textEncoders = parts.map((part) => part.textEncoder);
    const loadEncoder = () => VaeEncoder.load(vaeDir, loadOptions);
    return new StableDiffusionPipeline(config, prompts, embeddings, textEncoders, unet, vae, tinyVae, previewer, sequentialGuidance, clock, info, loadEncoder, options.freeMemory ?? freeMemoryBytes);
  }

  async generate(options: GenerateOptions): Promise<GenerateOutput> {
    const started = performance.now();
    const onnxBefore = this.clock.runMs;
    const { scheduler, entry } = createScheduler(options.scheduler, this.config.schedulerConfig);
    const settings = this.checkInputs(options, entry.name);
    await this.checkRoomFor(options);
    // An LCM U-Net takes the guidance as an embedding instead of a second, unconditional batch.
    const timeCondition = this.unet.timeCondition && this.unet.timeConditionTensor(lcmGuidanceCondition(settings.guidanceScale, this.unet.timeCondition.dim));
    const doGuidance = !timeCondition && settings.guidanceScale > 1;

    const tokenizeStarted = performance.now();
    const prompts = options.promptEmbeds ? undefined : await this.tokenizePrompts(settings, doGuidance, options.promptSyntax ?? 'a1111');
    const tokenizeMs = performance.now() - tokenizeStarted;

    const encodeStarted = performance.now();
    const embedding = prompts ? await this.encodePrompt(prompts.prompt, prompts.negative, doGuidance) : givenEmbedding(options.promptEmbeds!, doGuidance);
    const batches = doGuidance && this.sequentialGuidance ? guidanceHalves(embedding) : [embedding];
    const conditionings = batches.map((batch) => ({ ...this.unet.conditioning(batch, settings), ...(timeCondition && { timestep_cond: timeCondition }) }));
    const textEncoderMs = performance.now() - encodeStarted;

    scheduler.setTimesteps(settings.steps);
    const initImage = options.initImage;
    const timesteps = initImage ? timestepsForStrength(scheduler, settings.steps, initImage.strength) : scheduler.timesteps;

    const latentSize = { height: settings.height / 8, width: settings.width / 8 };
    const generator = new TorchGenerator(BigInt(settings.seed));
    const imageEncodeStarted = performance.now();
    let latents = initImage
      ? await noisedImageLatents(await this.imageEncoder(), await fitInitImage(initImage, settings), generator, scheduler, timesteps[0])
      : this.prepareLatents(generator, latentSize, scheduler.initNoiseSigma);
    const vaeEncodeMs = performance.now() - imageEncodeStarted;

    const denoiseStarted = performance.now();
    const totalSteps = timesteps.length;
    const previews = options.preview && new PreviewSchedule(options.preview, this.previewer, latentSize);
    for (const [index, timestep] of timesteps.entries()) {
      throwIfAborted(options.signal);
      const modelInput = scheduler.scaleModelInput(latents, timestep);
      const prediction = await this.predictNoise(modelInput, latentSize, timestep, conditionings, doGuidance);
      const noise = doGuidance ? applyGuidance(prediction, settings.guidanceScale) : prediction;
      const { prevSample, predOriginalSample } = scheduler.step(noise, timestep, latents, { generator });
      latents = prevSample;
      const progress = { step: index + 1, totalSteps };
      options.onStep?.(progress);
      await previews?.afterStep(progress, predOriginalSample ?? latents);
    }
    const denoiseMs = performance.now() - denoiseStarted;

    throwIfAborted(options.signal);
    const vaeStarted = performance.now();
    const decoder = this.usesTinyDecoder(options) ? this.tinyVae! : this.vae;
    const image = await decoder.decode(latents, latentSize);
    const vaeMs = performance.now() - vaeStarted + (initImage ? vaeEncodeMs : 0);

    const timings = {
      tokenizeMs,
      textEncoderMs,
      denoiseMs,
      vaeMs,
      totalMs: performance.now() - started,
      onnxMs: this.clock.runMs - onnxBefore,
    };
    return { image, settings, timings };
  }

  /**
   * The U-Net's prediction for `latents`: with guidance for [uncond, text] stacked, made in one batch-2 call or,
   * given a conditioning per half, in two batch-1 calls.
   */
  private async predictNoise(latents: Float32Array, size: LatentSize, timestep: number, conditionings: UNetConditioning[], doGuidance: boolean): Promise<Float32Array> {
    if (conditionings.length === 2) {
      const [uncond, text] = conditionings;
      return concat(await this.unet.predict(latents, size, timestep, uncond), await this.unet.predict(latents, size, timestep, text));
    }
    return this.unet.predict(doGuidance ? concat(latents, latents) : latents, size, timestep, conditionings[0]);
  }

  /** Attention blocks fused at load per model (none off the CPU, with fuseAttention: false, or when built fused). */
  get fusedAttentions(): { unet: number; vae: number } {
    return { unet: this.unet.fusedAttentions, vae: this.vae.fusedAttentions };
  }

  /** The VAE decoder's convolution layout on the CPU (plain for models made for 1024x1024: see VaeDecoder.load). */
  get decoderLayout(): ConvolutionLayout {
    return this.vae.layout;
  }

  /** What the GPU rewrite fused at load per model (undefined where it did not run). */
  get gpuFusions(): { unet?: GpuFusions; vae?: GpuFusions } {
    return { unet: this.unet.gpuFusions, vae: this.vae.gpuFusions };
  }

  /** The model's graphs were written with attention already fused (see src/graphs). */
  get builtFused(): boolean {
    return this.config.builtFused;
  }

  async release(): Promise<void> {
    const encoder = await this.encoder?.catch(() => undefined);
    await Promise.all([...this.textEncoders.map((textEncoder) => textEncoder.release()), this.unet.release(), this.vae.release(), this.tinyVae?.release(), encoder?.release()]);
  }

  /** Whether a request gets the tiny decoder: when it asks for it and one is loaded (else the model's own VAE). */
  private usesTinyDecoder(request: GenerateRequest): boolean {
    return request.decoder === 'tiny' && this.tinyVae !== undefined;
  }

  private async imageEncoder(): Promise<VaeEncoder> {
    this.encoder ??= this.loadEncoder();
    const encoder = await this.encoder.catch((error: unknown) => {
      this.encoder = undefined;
      throw error;
    });
    if (!encoder) throw new Error(`${this.info.name} has no vae_encoder, so it cannot start from an image`);
    return encoder;
  }

  private checkInputs(options: GenerateRequest, schedulerName: string): GenerationSettings {
    const info = this.info;
    if (typeof options.prompt !== 'string') throw new Error('prompt must be a string');
    const { steps, guidanceScale, width, height } = options;
    if (!Number.isInteger(steps) || steps < 1 || steps > REQUEST_LIMITS.maxSteps) {
      throw new Error(`steps must be a whole number from 1 to ${REQUEST_LIMITS.maxSteps} (got ${steps})`);
    }
    if (!Number.isFinite(guidanceScale) || guidanceScale < 0 || guidanceScale > REQUEST_LIMITS.maxGuidance) {
      throw new Error(`guidance must be a number from 0 to ${REQUEST_LIMITS.maxGuidance} (got ${guidanceScale})`);
    }
    this.checkSide('width', width, info.nativeWidth);
    this.checkSide('height', height, info.nativeHeight);
    const seed = parseSeed(options.seed);
    const strength = options.initImage?.strength;
    if (strength !== undefined && !(strength > 0 && strength <= 1)) throw new Error(`strength must be more than 0 and at most 1 (got ${strength})`);
    return {
      prompt: options.prompt,
      negativePrompt: options.negativePrompt ?? '',
      steps,
      guidanceScale,
      seed: seed.toString(),
      width,
      height,
      scheduler: schedulerName,
      model: info.name,
      ...(info.loras ? { loras: info.loras } : {}),
      ...(info.vae ? { vae: info.vae } : {}),
      ...(this.usesTinyDecoder(options) ? { tinyDecoder: info.tinyDecoder } : {}),
      ...(options.initImage ? { strength: options.initImage.strength } : {}),
    };
  }

  /**
   * Throws NotEnoughMemoryError when this machine has no memory left for the work space of the image `options` ask
   * for; generate checks it before the first step. Decoding SD's VAE in float32 on the CPU takes 3-4 GB more at
   * 1024x1024 and four times that at 2048x2048 (an Upscale (Creative) of a 1024x1024 image), and running out would
   * end the process with every job in it. Counted: the U-Net at its batch, the decoder, the encoder for a picture to
   * start from, and the tiny decoder previews may use; only what exceeds the largest size each has run.
   */
  async checkRoomFor(options: GenerateOptions): Promise<void> {
    const guided = !this.unet.timeCondition && options.guidanceScale > 1;
    const vaeHalves = new Set([
      this.usesTinyDecoder(options) ? this.tinyVae! : this.vae,
      options.preview ? this.tinyVae : undefined,
      options.initImage ? await this.imageEncoder() : undefined,
    ]);
    const pixels = options.width * options.height;
    let needed = this.unet.workSpace.growthFor((guided && !this.sequentialGuidance ? 2 : 1) * pixels);
    for (const half of vaeHalves) needed += half?.workSpace.growthFor(pixels) ?? 0;
    if (needed === 0) return;
    const free = this.freeMemory();
    if (needed > free) throw new NotEnoughMemoryError(options.width, options.height, needed, free);
  }

  private checkSide(label: 'width' | 'height', value: number, native: number): void {
    const { sizeMultiple, fixedSize } = this.info;
    if (!Number.isInteger(value) || value <= 0 || value > REQUEST_LIMITS.maxSide) {
      throw new Error(`${label} must be a whole number of pixels from ${sizeMultiple} to ${REQUEST_LIMITS.maxSide} (got ${value})`);
    }
    if (fixedSize && value !== native) {
      throw new Error(`${label} ${value} is not supported: this model was exported for ${this.info.nativeWidth}x${this.info.nativeHeight} only`);
    }
    if (value % sizeMultiple !== 0) {
      const lower = Math.max(sizeMultiple, Math.floor(value / sizeMultiple) * sizeMultiple);
      throw new Error(
        `${label} ${value} is not a multiple of ${sizeMultiple}: this model's U-Net needs ${sizeMultiple}-pixel multiples (try ${lower} or ${lower + sizeMultiple})`,
      );
    }
  }

  /**
   * The prompts cut into chunks: the negative only with guidance, and not when it is empty and the model takes
   * zeros for it (SDXL's force_zeros_for_empty_prompt). Records in `settings` the embeddings they use.
   */
  private async tokenizePrompts(settings: GenerationSettings, doGuidance: boolean, syntax: PromptSyntax): Promise<{ prompt: TokenizedPrompt; negative?: TokenizedPrompt }> {
    if (this.embeddings) this.prompts.useEmbeddings(await this.embeddings.current());
    const prompt = this.prompts.tokenize(settings.prompt, syntax, 'prompt');
    const zeroNegative = this.config.sdxl?.forceZerosForEmptyPrompt === true && settings.negativePrompt === '';
    const negative = doGuidance && !zeroNegative ? this.prompts.tokenize(settings.negativePrompt, syntax, 'negative prompt') : undefined;
    const embeddingsUsed = PromptEncoder.embeddingsUsed(prompt, ...(negative ? [negative] : []));
    if (embeddingsUsed.length > 0) settings.embeddings = embeddingsUsed;
    return { prompt, negative };
  }

  /**
   * [uncond, cond] stacked as one batch-2 context when guidance is on (padded to the same length; zeros for the
   * uncond when there is no negative to encode), else the prompt's alone.
   */
  private async encodePrompt(prompt: TokenizedPrompt, negative: TokenizedPrompt | undefined, doGuidance: boolean): Promise<TextEmbedding> {
    const context = negative
      ? await this.prompts.encodePair(prompt, negative)
      : doGuidance
        ? withZeroNegative(await this.prompts.encode(prompt))
        : await this.prompts.encode(prompt);
    const expectedWidth = this.unet.contextWidth;
    if (expectedWidth !== undefined && context.width !== expectedWidth) {
      throw new Error(`text_encoder gives ${context.width}-wide embeddings but the unet expects ${expectedWidth}: the model's parts do not belong together`);
    }
    return context;
  }

  private prepareLatents(generator: TorchGenerator, size: LatentSize, initNoiseSigma: number): Float32Array {
    const latents = generator.randn(4 * size.height * size.width);
    if (initNoiseSigma !== 1) {
      for (let i = 0; i < latents.length; i++) latents[i] *= initNoiseSigma;
    }
    return latents;
  }
}

/** The picture as RGB at the request's size (diffusers' pipeline resizes its `image` too). */
function fitInitImage({ image }: InitImage, size: { width: number; height: number }): Promise<RgbImage> {
  return loadInitImage(Buffer.from(image, 'base64'), size, MAX_INIT_IMAGE_PIXELS);
}

function givenEmbedding({ prompt, negative, width, pooled }: NonNullable<GenerateOptions['promptEmbeds']>, doGuidance: boolean): TextEmbedding {
  if (prompt.length % width !== 0 || (doGuidance && negative.length !== prompt.length)) {
    throw new Error(`promptEmbeds: the prompt and negative conditioning must be [tokens, ${width}] of the same length`);
  }
  const stacked = (pair: { prompt: Float32Array; negative: Float32Array }) => (doGuidance ? concat(pair.negative, pair.prompt) : pair.prompt);
  return { data: stacked({ prompt, negative }), sequenceLength: prompt.length / width, width, ...(pooled ? { pooled: stacked(pooled) } : {}) };
}

/** A guidance batch's [uncond, text] conditioning as two batch-1 ones. */
function guidanceHalves({ data, pooled, ...shape }: TextEmbedding): TextEmbedding[] {
  const half = (values: Float32Array, index: number) => values.slice((index * values.length) / 2, ((index + 1) * values.length) / 2);
  return [0, 1].map((index) => ({ ...shape, data: half(data, index), ...(pooled ? { pooled: half(pooled, index) } : {}) }));
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new GenerationAbortedError();
}

function concat(first: Float32Array, second: Float32Array): Float32Array {
  const out = new Float32Array(first.length + second.length);
  out.set(first);
  out.set(second, first.length);
  return out;
}

/** eps = eps_uncond + g * (eps_text - eps_uncond), over a [uncond, text] batch. */
function applyGuidance(prediction: Float32Array, scale: number): Float32Array {
  const half = prediction.length / 2;
  const out = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    const uncond = prediction[i];
    out[i] = uncond + scale * (prediction[half + i] - uncond);
  }
  return out;
}
