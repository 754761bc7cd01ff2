import type { PreviewImage } from '../image/preview.ts';
import { ANIMATION_FRAMES, encodeStepsAnimation, type StepFrame, type StepsAnimation } from '../image/steps-animation.ts';
import type { PreviewCadence } from '../pipeline/preview-schedule.ts';
import type { GenerateRequest, GenerationSettings, ModelInfo, StageTimings, StepProgress } from '../pipeline/types.ts';

/** One finished image: PNG bytes with its parameters chunk and the settings that made it (plain data, so any backend can carry it). */
export interface GeneratedImage {
  png: Uint8Array;
  settings: GenerationSettings;
  timings: StageTimings;
  parameters: string;
  /** The denoising of this image as an animation, for a job that asked for one. */
  animation?: StepsAnimation;
  /** The safety checker flagged it (diffusers' has_nsfw_concepts); undefined when no checker ran. */
  nsfw?: boolean;
}

export interface GeneratorCallOptions {
  signal?: AbortSignal;
  onStep?: (progress: StepProgress) => void;
  /** An installed model's name, for generators that can switch models (ModelSwitcher); others run their one model. */
  model?: string;
  /** Called when the requested model has to be loaded first. */
  onModelLoad?: (model: string) => void;
  /** Previews of the image forming (see PipelineThread). */
  preview?: PreviewCadence & { onPreview: (preview: PreviewImage) => void };
}

/** What runs a backend's jobs: one model (PipelineThread fits this shape), or one at a time of several (ModelSwitcher). */
export interface ImageGenerator {
  /** The default model, once loaded. */
  readonly ready: Promise<ModelInfo>;
  generate(request: GenerateRequest, options?: GeneratorCallOptions): Promise<GeneratedImage>;
}

export interface JobResult {
  images: GeneratedImage[];
  /** Wall time from the job's start to its last image. */
  elapsedMs: number;
}

/** Where a running job is: image i of n, step s of its t (t: the request's steps until the scheduler says). */
export interface JobProgress {
  image: number;
  images: number;
  step: number;
  totalSteps: number;
  /** Set while the job's model is being loaded. */
  loadingModel?: string;
  /** The newest preview of the image being drawn. */
  preview?: PreviewImage;
}

export interface RunOptions {
  signal: AbortSignal;
  /** Told at the start of each image, at every step and preview, and when the job's model has to be loaded first. */
  onProgress(progress: JobProgress): void;
  /** Previews as often as this (none when absent). */
  previews?: PreviewCadence;
  /** Make each image's steps animation (ImagineOptions.stepsVideo). */
  stepsVideo?: boolean;
  /** Awaited before each image: a backend's chance to notice a cancel that reached it some other way. */
  beforeImage?(): Promise<void>;
}

/**
 * The one job loop of every backend: the job's settled requests (see resolveRequests), one image after the other, on
 * the generator, with progress. Aborting the signal stops it within a denoising step.
 */
export async function runJob(requests: readonly GenerateRequest[], model: string | undefined, generator: ImageGenerator, options: RunOptions): Promise<JobResult> {
  const started = performance.now();
  const images: GeneratedImage[] = [];
  for (const [index, request] of requests.entries()) {
    await options.beforeImage?.();
    options.signal.throwIfAborted();
    const position = { image: index + 1, images: requests.length, step: 0, totalSteps: request.steps };
    options.onProgress(position);
    let preview: PreviewImage | undefined;
    // The animation takes a frame of every step from the same previews, within the previews' budget.
    const frames: StepFrame[] | undefined = options.stepsVideo ? [] : undefined;
    let totalSteps = request.steps;
    const cadence = frames ? { ...ANIMATION_FRAMES, maxShare: options.previews?.maxShare } : options.previews;
    const image = await generator.generate(request, {
      model,
      signal: options.signal,
      onModelLoad: (loadingModel) => options.onProgress({ ...position, loadingModel }),
      onStep: ({ step, totalSteps }) => options.onProgress({ ...position, step, totalSteps, ...(preview && { preview }) }),
      ...(cadence && {
        preview: {
          ...cadence,
          onPreview: (latest) => {
            frames?.push({ step: latest.step, image: latest.jpeg });
            totalSteps = latest.totalSteps;
            if (!options.previews) return;
            preview = latest;
            options.onProgress({ ...position, step: latest.step, totalSteps: latest.totalSteps, preview });
          },
        },
      }),
    });
    const animation = frames && (await encodeStepsAnimation(frames, image.png, totalSteps, { maxBytes: animationBudget(image.png, requests.length) }));
    images.push(animation ? { ...image, animation } : image);
  }
  return { images, elapsedMs: performance.now() - started };
}

/**
 * An image's share of Discord's default upload limit (10 MiB, less room for the strip), less the image: each animation
 * goes in its image's message.
 */
function animationBudget(png: Uint8Array, images: number): number {
  return (10 * 1024 * 1024 - 512 * 1024) / images - png.length;
}
