import type { PromptSyntax } from '../prompt/prompt-tokens.ts';

export { PROMPT_SYNTAXES, type PromptSyntax } from '../prompt/prompt-tokens.ts';

/**
 * A request that cannot be drawn as asked (a prompt too long, an option out of range): unlike any other failure, its
 * message is meant for whoever made the request, and is shown to them as it is.
 */
export class RequestError extends Error {
  override name = 'RequestError';
}

/** What any request must stay within, whatever the model (an operator's limits are usually tighter). */
export const REQUEST_LIMITS = { maxSteps: 1000, maxGuidance: 100, maxSide: 2048 } as const;

/**
 * What a caller asks of the pipeline, every choice made: defaults, limits and a random seed are the caller's to
 * settle (see resolveRequests), so the same request draws the same image on any machine.
 */
export interface GenerateRequest {
  prompt: string;
  negativePrompt?: string;
  /** AUTOMATIC1111's syntax when absent. */
  promptSyntax?: PromptSyntax;
  steps: number;
  guidanceScale: number;
  /** 0..2^64-1 as a decimal string or bigint (torch accepts 64-bit seeds). */
  seed: bigint | string | number;
  width: number;
  height: number;
  /** A scheduler name from the table (diffusers class name or AUTOMATIC1111 name); the model's own when absent. */
  scheduler?: string;
  /** `tiny`: decode with the tiny decoder when one is loaded beside the model (faster, a little less detail). */
  decoder?: Decoder;
  /** img2img: start from this picture (fitted to `width`×`height`) rather than from noise. */
  initImage?: InitImage;
  /** Upscale a finished image to `width`×`height` instead of drawing one (the other fields are its settings). */
  upscale?: UpscaleRequest;
}

/** The Upscale buttons' job: a finished image made `factor` times larger, and for Creative redrawn at that size. */
export interface UpscaleRequest {
  /** The image's PNG file, base64. */
  image: string;
  factor: number;
  /** Upscale (Creative): the larger image redrawn by img2img at this strength (AUTOMATIC1111's hires fix). */
  creativeStrength?: number;
}

/** A picture to start from (img2img), and how much of it to redraw. Plain data, so every queue can carry it. */
export interface InitImage {
  /** The picture's file (PNG, JPEG or WebP), base64; it is fitted to the request's size (see loadInitImage). */
  image: string;
  /**
   * 0 < strength ≤ 1: the share of the schedule run from the noised picture (AUTOMATIC1111's "Denoising strength").
   * 1 keeps only what the noised latents still hold of the picture; 0.3 keeps most of it.
   */
  strength: number;
}

/** How the final latents become the image: the model's own VAE, or a tiny decoder such as TAESD. */
export type Decoder = 'full' | 'tiny';
export const DECODERS: readonly Decoder[] = ['full', 'tiny'];

/** The settings a generation actually used, after defaults were applied. */
export interface GenerationSettings {
  prompt: string;
  negativePrompt: string;
  steps: number;
  guidanceScale: number;
  seed: string;
  width: number;
  height: number;
  /** The AUTOMATIC1111-style display name of the scheduler, e.g. "Euler a". */
  scheduler: string;
  model: string;
  /** The textual-inversion embeddings the prompt and negative prompt used, by name (absent: none). */
  embeddings?: string[];
  /** LoRAs merged into the model when it was imported. */
  loras?: LoraInfo[];
  /** A VAE other than the model's own (given at import or at load). */
  vae?: string;
  /**
   * The tiny decoder that decoded the image instead of the VAE (absent: the VAE did), by name. AUTOMATIC1111's
   * parameters record only that TAESD decoded it, so settings read from them name it "TAESD".
   */
  tinyDecoder?: string;
  /** img2img: the strength the picture was redrawn with (absent: drawn from noise). */
  strength?: number;
  /** An upscaled image: by how much, with what (an upscaler's name, or Lanczos), and whether redrawn (Creative). */
  upscale?: { factor: number; upscaler: string; creative: boolean };
}

export interface LoraInfo {
  name: string;
  weight: number;
}

export interface StageTimings {
  tokenizeMs: number;
  textEncoderMs: number;
  denoiseMs: number;
  /** The VAE encoder (img2img) and decoder. */
  vaeMs: number;
  totalMs: number;
  /** Time inside onnxruntime's session.run, all models together. */
  onnxMs: number;
}

export interface StepProgress {
  step: number;
  totalSteps: number;
}

/** What the model offers callers, read from its files once it is loaded. */
export interface ModelInfo {
  name: string;
  dir: string;
  nativeWidth: number;
  nativeHeight: number;
  /** Width and height must be multiples of this (64 for SD 1.x/2.x exports). */
  sizeMultiple: number;
  /** The U-Net was exported for its native size only. */
  fixedSize: boolean;
  defaultScheduler: string;
  defaultSteps: number;
  defaultGuidance: number;
  /** The most steps worth offering (4 for distilled few-step models). */
  maxSteps: number;
  predictionType: 'epsilon' | 'v_prediction' | 'sample';
  precision: 'fp32' | 'fp16';
  /** The most 75-token chunks a prompt may take: 8, or 1 when the U-Net was exported for a 77-token context only. */
  maxPromptChunks: number;
  /** A distilled few-step model (SD-Turbo style): 1-4 steps, guidance 0. */
  isTurbo: boolean;
  /** Samples with LCM in about 4 steps: a Latent Consistency Model, or a model with an LCM-LoRA merged in. */
  isLcm: boolean;
  /** True for the project's generated tiny model, which draws noise, not pictures. */
  isTiny: boolean;
  /** The model has a VAE encoder, so it can start from a picture (img2img). */
  imageToImage: boolean;
  /**
   * The width of the U-Net's text context: its text encoders' widths together (768 SD 1.x, 1024 SD 2.x, 2048 SDXL),
   * which tells the textual-inversion embeddings it takes. Absent when the graph does not say.
   */
  textContextWidth?: number;
  /** LoRAs merged into the model when it was imported. */
  loras?: LoraInfo[];
  /** A VAE other than the model's own (given at import or at load). */
  vae?: string;
  /** The tiny decoder loaded beside the model's VAE, by name: for previews and requests for `decoder: 'tiny'`. */
  tinyDecoder?: string;
}
