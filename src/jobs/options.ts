import type { PreviewCadence } from '../pipeline/preview-schedule.ts';
import { DECODERS, REQUEST_LIMITS, RequestError, type Decoder, type GenerateRequest, type ModelInfo, type PromptSyntax } from '../pipeline/types.ts';
import { sizeForPicture } from '../image/init-image.ts';
import { minimumSteps } from '../pipeline/img2img.ts';
import { PromptSyntaxError, parsePromptAttention } from '../prompt/attention-parser.ts';
import { randomSeed } from '../random/torch-generator.ts';
import { isSchedulerName, SCHEDULERS } from '../schedulers/index.ts';

// What a user may ask of a job, the operator's policy, and the one place both are settled into complete pipeline
// requests. Neutral: the Discord side, both queue backends, the workers and the CLI all use it.

/** Width and height of an image, e.g. 512x768. */
export interface ImageSize {
  width: number;
  height: number;
}

/** What a user asked for; everything left undefined comes from the operator's policy or the model. */
export interface ImagineOptions {
  prompt: string;
  negativePrompt?: string;
  /** Decimal string (0 .. 2^64-1); a random one when absent. Image i of the job uses seed + i. */
  seed?: string;
  steps?: number;
  guidance?: number;
  size?: ImageSize;
  /** Without a size: the offered size nearest to this width:height ratio (`--ar 16:9` in the prompt). */
  aspectRatio?: ImageSize;
  scheduler?: string;
  /** How the prompt is read; the policy's when absent. */
  promptSyntax?: PromptSyntax;
  /** The name of an installed model (never a path); the operator's default model when absent. */
  model?: string;
  /** `tiny`: decode with the model's tiny decoder (faster, a little less detail); the policy's when absent. */
  decoder?: Decoder;
  /** Images in the job, 1 to MAX_IMAGES_PER_JOB. */
  count: number;
  /** Add an animation of the first image's denoising, one frame per step (see src/image/steps-animation.ts). */
  stepsVideo?: boolean;
  /** img2img: the picture the job starts from; without a size the job draws it at its own proportions. */
  initImage?: SourcePicture;
  /** An upscale of a finished image (the Upscale buttons) instead of a new one; the other options are its settings. */
  upscale?: UpscaleOptions;
}

/** A finished image to make larger: its PNG (base64) and size, by how much, and whether to redraw it (Creative). */
export interface UpscaleOptions {
  image: string;
  width: number;
  height: number;
  factor: number;
  creative: boolean;
}

/** Upscale (Creative) redraws the larger image at this strength: its composition stays, its detail is new. */
export const CREATIVE_STRENGTH = 0.35;
/** The largest side an upscale makes (its PNG must still fit a Discord upload, as WebP at worst). */
export const MAX_UPSCALED_SIDE = 2048;

/** A picture a job starts from: its file, its size as shown, how much of it to redraw, and where it came from. */
export interface SourcePicture {
  /** The file (PNG, JPEG or WebP), base64: plain data, so the journal and every queue carry it. */
  image: string;
  width: number;
  height: number;
  /** 0 < strength ≤ 1 (AUTOMATIC1111's "Denoising strength"). */
  strength: number;
  /** Where it came from (an attachment's or a message's link, or a file name), to show with the result. */
  source?: string;
}

export const MAX_IMAGES_PER_JOB = 4;
export const MAX_PROMPT_LENGTH = 1000;

/** The operator's defaults and limits; the model fills in whatever is left undefined. */
export interface GenerationPolicy {
  defaultSteps: number | undefined;
  maxSteps: number;
  defaultGuidance: number | undefined;
  maxGuidance: number;
  defaultScheduler: string | undefined;
  defaultSize: ImageSize | undefined;
  /**
   * Sizes offered besides the model's native size (those the model cannot draw are left out), 'model' for the sizes
   * that suit each model (see modelSizes), or 'any' size it can draw.
   */
  sizes: readonly ImageSize[] | 'model' | 'any';
  /** How prompts are read unless a job says otherwise (AUTOMATIC1111's syntax, or diffusers' plain text). */
  promptSyntax: PromptSyntax;
  /** The decoder jobs get unless they say otherwise: `tiny` where the model has one installed; `full` when absent. */
  defaultDecoder?: Decoder;
  /** Previews of each image while it is drawn, this often; none when absent. */
  previews?: PreviewCadence;
}

const SEED_LIMIT = 2n ** 64n;

/** An option the user gave that this model or the operator's limits do not allow; the message is for the user. */
export class OptionError extends RequestError {
  override name = 'OptionError';
}

/** The most characters of a user's value an OptionError repeats: a huge value must not make the answer too long. */
const QUOTED_INPUT_LENGTH = 40;

/** A value the user gave, quoted for a message back to them and cut short when long. */
export function quoteInput(text: string): string {
  const characters = [...text];
  return `"${characters.length > QUOTED_INPUT_LENGTH ? `${characters.slice(0, QUOTED_INPUT_LENGTH - 1).join('')}…` : text}"`;
}

/** Length as Discord (and a reader) counts it: in code points, so an emoji is one character, not two UTF-16 units. */
export function characterCount(text: string): number {
  let count = 0;
  for (const _ of text) count++;
  return count;
}

/** Whitespace, control and format characters (zero-width spaces and joiners, bidi marks), lone combining marks and blank letters. */
const INVISIBLE = /[\s\p{Cc}\p{Cf}\p{Z}\p{M}\u115f\u1160\u3164\uffa0\u2800]/gu;

/** Whether the text shows nothing at all. */
export function isBlank(text: string): boolean {
  return text.replace(INVISIBLE, '') === '';
}

/** "512x768" (or "512 × 768") as a size; undefined when it is not one. */
export function parseSize(text: string): ImageSize | undefined {
  const match = /^\s*(\d{1,5})\s*[x×]\s*(\d{1,5})\s*$/i.exec(text);
  if (!match) return undefined;
  const size = { width: Number(match[1]), height: Number(match[2]) };
  return size.width > 0 && size.height > 0 ? size : undefined;
}

export function sizeLabel(size: ImageSize): string {
  return `${size.width}x${size.height}`;
}

const imageSize = (width: number, height: number): ImageSize => ({ width, height });

/** The sizes SD 1.x and 2.x models (and SDXL-Turbo, trained at 512x512) are offered when the operator lists none. */
export const SD_SIZES: readonly ImageSize[] = [imageSize(512, 512), imageSize(512, 768), imageSize(768, 512), imageSize(640, 384), imageSize(384, 640)];

/**
 * SDXL's training buckets: about 1024x1024 pixels in each shape, square first, then from the nearest shapes to the
 * widest. SDXL draws these well and smaller sizes poorly.
 */
export const SDXL_SIZES: readonly ImageSize[] = [
  imageSize(1024, 1024),
  imageSize(896, 1152),
  imageSize(1152, 896),
  imageSize(832, 1216),
  imageSize(1216, 832),
  imageSize(768, 1344),
  imageSize(1344, 768),
  imageSize(640, 1536),
  imageSize(1536, 640),
];

/** The sizes that suit a model: SDXL's buckets for a model drawn natively at 1024x1024 or more, else SD's. */
export function modelSizes(model: ModelInfo): readonly ImageSize[] {
  return model.nativeWidth * model.nativeHeight >= 1024 * 1024 ? SDXL_SIZES : SD_SIZES;
}

/** The sizes the policy lists: SIZES, or without it every size that suits some model (SD's and SDXL's); none for 'any'. */
export function listedSizes(policy: GenerationPolicy): readonly ImageSize[] {
  return policy.sizes === 'any' ? [] : policy.sizes === 'model' ? [...SD_SIZES, ...SDXL_SIZES] : policy.sizes;
}

/** The native size first, then the operator's sizes (or those that suit the model) this model can draw, without duplicates. */
export function offeredSizes(policy: GenerationPolicy, model: ModelInfo | undefined): ImageSize[] {
  const listed = policy.sizes === 'any' ? [] : policy.sizes === 'model' ? (model ? modelSizes(model) : []) : policy.sizes;
  const candidates = [...(model ? [imageSize(model.nativeWidth, model.nativeHeight)] : []), ...(policy.defaultSize ? [policy.defaultSize] : []), ...listed];
  const seen = new Set<string>();
  return candidates.filter((size) => {
    const label = sizeLabel(size);
    if (seen.has(label) || (model && !fitsModel(size, model))) return false;
    seen.add(label);
    return true;
  });
}

function fitsModel(size: ImageSize, model: ModelInfo): boolean {
  return sizeProblem(size, model) === undefined;
}

/** Why the model cannot draw this size (in words for the user), or undefined when it can. */
function sizeProblem(size: ImageSize, model: ModelInfo): string | undefined {
  const label = sizeLabel(size);
  if (model.fixedSize) {
    const native = `${model.nativeWidth}x${model.nativeHeight}`;
    return label === native ? undefined : `${model.name} was exported for ${native} only.`;
  }
  const multiple = model.sizeMultiple;
  const sides = [size.width, size.height];
  if (!sides.every((side) => Number.isInteger(side) && side >= multiple && side <= REQUEST_LIMITS.maxSide)) {
    return `${label} is outside what ${model.name} draws: width and height from ${multiple} to ${REQUEST_LIMITS.maxSide} pixels.`;
  }
  if (sides.every((side) => side % multiple === 0)) return undefined;
  const nearest = sides.map((side) => Math.max(multiple, Math.round(side / multiple) * multiple)).join('x');
  return `${label} is not a size ${model.name} can draw: its U-Net takes multiples of ${multiple} pixels (try ${nearest}).`;
}

export interface StepRange {
  max: number;
  default: number;
}

/** Distilled to draw in a few steps (SD-Turbo, LCM): the operator's defaults, meant for other models, do not apply. */
function isFewStep(model: ModelInfo): boolean {
  return model.isTurbo || model.isLcm;
}

export function stepRange(policy: GenerationPolicy, model: ModelInfo): StepRange {
  const max = Math.min(policy.maxSteps, model.maxSteps);
  const configured = isFewStep(model) ? undefined : policy.defaultSteps;
  return { max, default: Math.min(configured ?? model.defaultSteps, max) };
}

export function defaultGuidance(policy: GenerationPolicy, model: ModelInfo): number {
  return isFewStep(model) ? model.defaultGuidance : (policy.defaultGuidance ?? model.defaultGuidance);
}

/** Checks what needs no model: prompt lengths, count, seed. Throws OptionError. */
export function checkOptions(options: ImagineOptions): void {
  if (isBlank(options.prompt)) throw new OptionError('The prompt is empty: it has no visible characters.');
  const promptLength = characterCount(options.prompt);
  if (promptLength > MAX_PROMPT_LENGTH) {
    throw new OptionError(`The prompt is ${promptLength} characters long; the limit is ${MAX_PROMPT_LENGTH}.`);
  }
  if (characterCount(options.negativePrompt ?? '') > MAX_PROMPT_LENGTH) {
    throw new OptionError(`The negative prompt is longer than ${MAX_PROMPT_LENGTH} characters.`);
  }
  if (!Number.isInteger(options.count) || options.count < 1 || options.count > MAX_IMAGES_PER_JOB) {
    throw new OptionError(`count must be between 1 and ${MAX_IMAGES_PER_JOB}.`);
  }
  if (options.seed !== undefined && !(/^\d{1,20}$/.test(options.seed) && BigInt(options.seed) < SEED_LIMIT)) {
    throw new OptionError(`seed must be a whole number from 0 to ${SEED_LIMIT - 1n}.`);
  }
  if (options.steps !== undefined && (!Number.isInteger(options.steps) || options.steps < 1)) {
    throw new OptionError('steps must be a whole number of at least 1.');
  }
  if (options.guidance !== undefined && !(Number.isFinite(options.guidance) && options.guidance >= 0)) {
    throw new OptionError('guidance must be a number of at least 0.');
  }
  if (options.decoder !== undefined && !DECODERS.includes(options.decoder)) {
    throw new OptionError(`decoder must be one of ${DECODERS.join(', ')}.`);
  }
  const strength = options.initImage?.strength;
  if (strength !== undefined && !(strength > 0 && strength <= 1)) {
    throw new OptionError(`strength must be more than 0 and at most 1 (got ${strength}).`);
  }
  const scheduler = options.scheduler;
  if (scheduler !== undefined && !isSchedulerName(scheduler)) {
    throw new OptionError(`Unknown scheduler ${quoteInput(scheduler)}; choose one of ${SCHEDULERS.map((entry) => entry.name).join(', ')}.`);
  }
}

/** An upscale's one request: the source's settings at the larger size, with the image to upscale. */
function upscaleRequest(options: ImagineOptions & { upscale: UpscaleOptions }, policy: GenerationPolicy, model: ModelInfo): GenerateRequest {
  const { upscale } = options;
  const width = upscale.width * upscale.factor;
  const height = upscale.height * upscale.factor;
  if (!Number.isInteger(upscale.factor) || upscale.factor < 2 || Math.max(width, height) > MAX_UPSCALED_SIDE) {
    throw new OptionError(`A ×${upscale.factor} upscale of ${upscale.width}x${upscale.height} would be ${width}x${height}; upscales are at most ${MAX_UPSCALED_SIDE} pixels a side.`);
  }
  const steps = options.steps ?? stepRange(policy, model).default;
  return {
    prompt: options.prompt,
    negativePrompt: options.negativePrompt ?? '',
    promptSyntax: options.promptSyntax ?? policy.promptSyntax,
    steps: upscale.creative ? Math.max(steps, minimumSteps(CREATIVE_STRENGTH)) : steps,
    guidanceScale: options.guidance ?? defaultGuidance(policy, model),
    seed: options.seed ?? randomSeed().toString(),
    width,
    height,
    ...(options.scheduler === undefined ? {} : { scheduler: options.scheduler }),
    upscale: { image: upscale.image, factor: upscale.factor, ...(upscale.creative ? { creativeStrength: CREATIVE_STRENGTH } : {}) },
  };
}

/**
 * Settles the user's options into one complete pipeline request per image (seeds seed, seed+1, ...; a random first
 * seed when none is given), applying the operator's defaults and limits and the model's. Called once per job: its
 * requests then travel with the job, so every backend and worker runs exactly these. Throws OptionError naming what
 * is not allowed.
 */
export function resolveRequests(options: ImagineOptions, policy: GenerationPolicy, model: ModelInfo): GenerateRequest[] {
  checkOptions(options);
  if (options.upscale) {
    if (options.upscale.creative && !model.imageToImage) throw new OptionError(`${model.name} has no VAE encoder, so it cannot redraw an upscale.`);
    return [upscaleRequest({ ...options, upscale: options.upscale }, policy, model)];
  }
  const steps = stepRange(policy, model);
  if (options.steps !== undefined && options.steps > steps.max) {
    throw new OptionError(`steps must be between 1 and ${steps.max} for ${model.name}.`);
  }
  if (options.guidance !== undefined && options.guidance > policy.maxGuidance) {
    throw new OptionError(`guidance must be between 0 and ${policy.maxGuidance}.`);
  }
  const sizes = offeredSizes(policy, model);
  const picture = options.initImage;
  if (picture && !model.imageToImage) throw new OptionError(`${model.name} has no VAE encoder, so it cannot start from a picture.`);
  // A picture is drawn at its own proportions: any size of them the model takes, else the offered size nearest to them.
  const pictureSize = picture && !model.fixedSize ? (policy.sizes === 'any' ? sizeForPicture(picture, model, REQUEST_LIMITS.maxSide) : nearestSize(sizes, picture)) : undefined;
  const size =
    options.size ??
    (options.aspectRatio && nearestSize(sizes, options.aspectRatio)) ??
    pictureSize ??
    policy.defaultSize ?? { width: model.nativeWidth, height: model.nativeHeight };
  const problem = policy.sizes === 'any' ? sizeProblem(size, model) : undefined;
  if (problem) throw new OptionError(problem);
  if (policy.sizes !== 'any' && !sizes.some((offered) => offered.width === size.width && offered.height === size.height)) {
    throw new OptionError(`${sizeLabel(size)} is not a size ${model.name} offers; choose one of ${sizes.map(sizeLabel).join(', ')}.`);
  }
  const promptSyntax = options.promptSyntax ?? policy.promptSyntax;
  if (promptSyntax === 'a1111') checkWeights(options);
  if (options.decoder === 'tiny' && model.tinyDecoder === undefined) {
    throw new OptionError(`${model.name} has no tiny decoder installed here; leave the decoder out to use its own.`);
  }
  const decoder = options.decoder ?? policy.defaultDecoder;
  const stepCount = options.steps ?? steps.default;
  if (picture && Math.floor(stepCount * picture.strength) < 1) {
    throw new OptionError(`strength ${picture.strength} of ${stepCount} steps leaves no step to run: use at least ${minimumSteps(picture.strength)} steps or a higher strength.`);
  }
  const firstSeed = options.seed === undefined ? randomSeed() : BigInt(options.seed);
  const scheduler = options.scheduler ?? policy.defaultScheduler;
  return Array.from({ length: options.count }, (_, index) => ({
    prompt: options.prompt,
    negativePrompt: options.negativePrompt ?? '',
    promptSyntax,
    steps: stepCount,
    guidanceScale: options.guidance ?? defaultGuidance(policy, model),
    seed: ((firstSeed + BigInt(index)) % SEED_LIMIT).toString(),
    width: size.width,
    height: size.height,
    ...(scheduler === undefined ? {} : { scheduler }),
    ...(decoder === 'tiny' ? { decoder } : {}),
    ...(picture ? { initImage: { image: picture.image, strength: picture.strength } } : {}),
  }));
}

/**
 * A job's settled requests as a queue keeps them beside its options (the local journal, Redis): without their
 * pictures, which are the options' own, so a picture is stored once per job and not once more per image.
 * withPictures puts them back.
 */
export function withoutPictures(requests: readonly GenerateRequest[]): GenerateRequest[] {
  return requests.map((request) => ({
    ...request,
    ...(request.initImage ? { initImage: { ...request.initImage, image: '' } } : {}),
    ...(request.upscale ? { upscale: { ...request.upscale, image: '' } } : {}),
  }));
}

/** The requests withoutPictures stored, with the pictures of the job's options back in them. */
export function withPictures(requests: readonly GenerateRequest[], options: ImagineOptions): GenerateRequest[] {
  return requests.map((request) => ({
    ...request,
    ...(request.initImage && options.initImage ? { initImage: { ...request.initImage, image: options.initImage.image } } : {}),
    ...(request.upscale && options.upscale ? { upscale: { ...request.upscale, image: options.upscale.image } } : {}),
  }));
}

/** The size whose shape is nearest to `ratio` (the nearest log aspect ratio; the first such size on a tie). */
export function nearestSize(sizes: readonly ImageSize[], ratio: ImageSize): ImageSize | undefined {
  const distance = (size: ImageSize) => Math.abs(Math.log(size.width / size.height) - Math.log(ratio.width / ratio.height));
  return sizes.reduce<ImageSize | undefined>((best, size) => (best === undefined || distance(size) < distance(best) ? size : best), undefined);
}

/** A weight AUTOMATIC1111 could not read fails the job there; here it is refused before the job is queued. */
function checkWeights(options: ImagineOptions): void {
  for (const [what, text] of [['prompt', options.prompt], ['negative prompt', options.negativePrompt ?? '']] as const) {
    try {
      parsePromptAttention(text);
    } catch (error) {
      if (error instanceof PromptSyntaxError) throw new OptionError(`The ${what} has a malformed weight: ${error.message}.`);
      throw error;
    }
  }
}
