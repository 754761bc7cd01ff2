import { basename, resolve } from 'node:path';
import sharp from 'sharp';
import { formatParameters } from '../image/parameters.ts';
import { encodePng } from '../image/png.ts';
import { encodePreview } from '../image/preview.ts';
import { ANIMATION_FRAMES, encodeStepsAnimation, type StepFrame } from '../image/steps-animation.ts';
import type { GpuFusions } from '../pipeline/gpu-fusion.ts';
import type { ExecutionProvider } from '../pipeline/onnx-model.ts';
import type { Decoder } from '../pipeline/types.ts';
import { StableDiffusionPipeline } from '../pipeline/pipeline.ts';
import type { ConvolutionLayout } from '../pipeline/vae.ts';
import { describeMachine, modelFileBytes, peakRssBytes, type MachineInfo } from './machine.ts';
import { sum } from './stats.ts';

export interface ImageBenchOptions {
  modelDir: string;
  width: number;
  height: number;
  steps: number;
  /** The model's own scheduler when absent. */
  scheduler?: string;
  guidance: number;
  runs: number;
  executionProvider: ExecutionProvider;
  /** Fuse attention on the CPU, as the pipeline does by default. */
  fuseAttention: boolean;
  /** On cuda and webgpu, rewrite the graphs into those providers' fused operators (gpu-fusion.ts). */
  gpuFusion?: boolean;
  /** Fix the graphs' input shapes to this size and batch (PipelineOptions.staticShape). */
  staticShape?: boolean;
  prompt: string;
  seed: string;
  /** A tiny decoder (TAESD) loaded beside the model's VAE: previews use it, and the final image with decoder 'tiny'. */
  tinyVaeDir?: string;
  /**
   * Which decodes the final image (default full: the model's own VAE); `alternate`: full and tiny in turns, run by
   * run, so the two are timed in the same process under the same conditions.
   */
  decoder?: Decoder | 'alternate';
  /** On the CPU, run fp16 graphs as they are instead of their float32 copies (to measure what fp16 costs there). */
  fp16AsIs?: boolean;
  /** Previews after every this many steps, under the bot's default budget, each encoded as the bot sends it. */
  previewEverySteps?: number;
  /** Make each image's steps animation as the bot does (its frames are then the previews, instead of previewEverySteps'). */
  stepsVideo?: boolean;
  /** img2img: each run redraws a picture of the size at this strength (the VAE encoder runs too; int(steps × strength) steps). */
  strength?: number;
}

/** One image, start to PNG, as the worker makes it. */
export interface ImageRun {
  tokenizeMs: number;
  textEncoderMs: number;
  /** One entry per denoising step: the U-Net's session.run (with guidance on the CPU, its two batch-1 runs together). */
  unetStepMs: number[];
  /** Per step, the denoising loop's time outside the U-Net: scheduler, guidance, tensor conversions, our glue. */
  ownStepMs: number;
  vaeMs: number;
  pngMs: number;
  /** Which decoded this run's image. */
  decoder: Decoder;
  /** Previews made, and their time: the tiny decoder's runs for them plus their JPEG encoding (a linear map's decode, microseconds, not counted). */
  previews: number;
  /** Of those, made with the tiny decoder (the rest with the linear map). */
  tinyDecoderPreviews: number;
  previewMs: number;
  /** The steps animation's encoding from the previews and the PNG (not part of totalMs), and its size. */
  animationMs?: number;
  animationBytes?: number;
  /** From generate() to the PNG's bytes. */
  totalMs: number;
  /** Time inside onnxruntime's session.run, all models together. */
  onnxMs: number;
  /** totalMs / onnxMs: 1 means everything but onnxruntime is free. */
  overheadRatio: number;
  iterationsPerSecond: number;
  scheduler: string;
}

export interface ImageBenchResult {
  options: ImageBenchOptions;
  model: { name: string; dir: string; fileBytes: number };
  machine: MachineInfo;
  loadMs: number;
  rssAfterLoadBytes: number;
  fusedAttentions: { unet: number; vae: number };
  decoderLayout: ConvolutionLayout;
  /** The graphs were written with attention already fused (nothing was rewritten at load). */
  builtFused: boolean;
  /** What the GPU rewrite fused at load, per model (absent where it did not run). */
  gpuFusions: { unet?: GpuFusions; vae?: GpuFusions };
  runs: ImageRun[];
  peakRssBytes: number;
  /** Peak RSS over the model's file size; the target is at most 1.3. */
  peakRssRatio: number;
}

/** Loads the model in this thread and makes `runs` images, timing every stage (nothing warms up unmeasured). */
export async function runImageBench(options: ImageBenchOptions, onProgress: (line: string) => void = () => {}): Promise<ImageBenchResult> {
  const modelDir = resolve(options.modelDir);
  const machine = describeMachine(options.executionProvider);
  const fileBytes = modelFileBytes(modelDir, { imageToImage: options.strength !== undefined });
  let unetCalls: number[] = [];
  let vaeCalls: number[] = [];

  const loadStarted = performance.now();
  const pipeline = await StableDiffusionPipeline.fromPretrained(modelDir, {
    executionProvider: options.executionProvider,
    fuseAttention: options.fuseAttention,
    tinyVaeDir: options.tinyVaeDir,
    float32OnCpu: !options.fp16AsIs,
    gpuFusion: options.gpuFusion,
    ...(options.staticShape && { staticShape: { width: options.width, height: options.height, guidance: options.guidance > 1 } }),
    onOnnxRun: (label, ms) => {
      if (label === 'unet') unetCalls.push(ms);
      if (label === 'vae_decoder') vaeCalls.push(ms);
    },
  });
  const loadMs = performance.now() - loadStarted;
  const rssAfterLoadBytes = process.memoryUsage.rss();
  const fusedAttentions = pipeline.fusedAttentions;
  const builtFused = pipeline.builtFused;
  const gpuFusions = pipeline.gpuFusions;
  onProgress(`loaded in ${(loadMs / 1000).toFixed(1)} s`);

  const initImage = options.strength === undefined ? undefined : { image: await benchPicture(options.width, options.height), strength: options.strength };
  const runs: ImageRun[] = [];
  try {
    for (let run = 0; run < options.runs; run++) {
      unetCalls = [];
      vaeCalls = [];
      const unetStepMs: number[] = [];
      const decoder: Decoder = options.decoder === 'alternate' ? (run % 2 === 0 ? 'full' : 'tiny') : (options.decoder ?? 'full');
      let previews = 0;
      let tinyDecoderPreviews = 0;
      let previewEncodeMs = 0;
      const frames: StepFrame[] = [];
      let totalSteps = options.steps;
      const cadence = options.stepsVideo ? ANIMATION_FRAMES : options.previewEverySteps ? { everySteps: options.previewEverySteps } : undefined;
      const output = await pipeline.generate({
        prompt: options.prompt,
        seed: options.seed,
        steps: options.steps,
        guidanceScale: options.guidance,
        width: options.width,
        height: options.height,
        scheduler: options.scheduler,
        decoder,
        ...(cadence && {
          preview: {
            ...cadence,
            onPreview: async ({ step, image, method }) => {
              const started = performance.now();
              frames.push({ step, image: await encodePreview(image) });
              previewEncodeMs += performance.now() - started;
              previews++;
              if (method === 'tiny-decoder') tinyDecoderPreviews++;
            },
          },
        }),
        ...(initImage ? { initImage } : {}),
        onStep: (progress) => {
          unetStepMs.push(sum(unetCalls.splice(0)));
          totalSteps = progress.totalSteps;
          onProgress(`run ${run + 1}/${options.runs}: step ${progress.step}/${totalSteps}`);
        },
      });
      const pngStarted = performance.now();
      const png = await encodePng(output.image, formatParameters(output.settings));
      const pngMs = performance.now() - pngStarted;
      const animationStarted = performance.now();
      const animation = options.stepsVideo ? await encodeStepsAnimation(frames, png, totalSteps) : undefined;
      const animationMs = performance.now() - animationStarted;

      const { timings } = output;
      const totalMs = timings.totalMs + pngMs;
      // The last decoder run is the image's; those before it (with a tiny decoder) were previews.
      const previewDecodeMs = sum(vaeCalls.slice(0, -1));
      runs.push({
        tokenizeMs: timings.tokenizeMs,
        textEncoderMs: timings.textEncoderMs,
        unetStepMs,
        ownStepMs: (timings.denoiseMs - sum(unetStepMs)) / unetStepMs.length,
        vaeMs: timings.vaeMs,
        pngMs,
        decoder,
        previews,
        tinyDecoderPreviews,
        previewMs: previewDecodeMs + previewEncodeMs,
        ...(animation && { animationMs, animationBytes: animation.data.length }),
        totalMs,
        onnxMs: timings.onnxMs,
        overheadRatio: totalMs / timings.onnxMs,
        iterationsPerSecond: unetStepMs.length / (timings.denoiseMs / 1000),
        scheduler: output.settings.scheduler,
      });
      onProgress(`run ${run + 1}/${options.runs}: ${(totalMs / 1000).toFixed(1)} s`);
    }
  } finally {
    await pipeline.release();
  }

  const peak = peakRssBytes();
  return {
    options,
    model: { name: basename(modelDir), dir: modelDir, fileBytes },
    machine,
    loadMs,
    rssAfterLoadBytes,
    fusedAttentions,
    decoderLayout: pipeline.decoderLayout,
    builtFused,
    gpuFusions,
    runs,
    peakRssBytes: peak,
    peakRssRatio: peak / fileBytes,
  };
}

/** A picture to start from, the same on every run and machine: a smooth colour gradient with fine stripes (base64 PNG). */
async function benchPicture(width: number, height: number): Promise<string> {
  const pixels = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const at = (y * width + x) * 3;
      pixels[at] = Math.round((255 * x) / width);
      pixels[at + 1] = Math.round((255 * y) / height);
      pixels[at + 2] = (x + y) % 16 < 8 ? 64 : 192;
    }
  }
  const png = await sharp(pixels, { raw: { width, height, channels: 3 } }).png().toBuffer();
  return png.toString('base64');
}
