import sharp from 'sharp';
import type { GenerateOptions, GenerateOutput, StableDiffusionPipeline } from '../pipeline/pipeline.ts';
import { RequestError, type GenerationSettings, type UpscaleRequest } from '../pipeline/types.ts';
import { formatGigabytes, NotEnoughMemoryError } from '../pipeline/work-space.ts';
import type { RgbImage } from '../pipeline/vae.ts';
import { upscaleImage, type OnnxUpscaler } from './upscaler.ts';

/**
 * The Upscale buttons' job, where the pipeline lives: the finished image made larger by the upscaler (Lanczos
 * without one), then for Creative redrawn at that size by img2img with the image's own settings.
 */
export async function runUpscale(
  pipeline: StableDiffusionPipeline,
  upscaler: OnnxUpscaler | undefined,
  options: GenerateOptions & { upscale: UpscaleRequest },
): Promise<GenerateOutput> {
  const started = performance.now();
  const { upscale, signal, onStep } = options;
  const { upscale: _, ...request } = options;
  const strength = upscale.creativeStrength;
  const redraw = (image: string, strength: number) => ({ ...request, initImage: { image, strength } });
  // The redraw's memory is known before anything runs: refuse it before the upscaler's work, not after.
  if (strength !== undefined) await pipeline.checkRoomFor(redraw(upscale.image, strength)).catch(explainForCreative);
  const source = await decodePng(upscale.image);
  const { image, method } = await upscaleImage(source, upscale.factor, upscaler, {
    signal,
    onTile: (done, total) => (strength === undefined ? onStep?.({ step: done, totalSteps: total }) : undefined),
  });
  if (image.width !== options.width || image.height !== options.height) {
    throw new Error(`upscaling ${source.width}x${source.height} by ${upscale.factor} gave ${image.width}x${image.height}, not the ${options.width}x${options.height} asked for`);
  }
  const upscaled = { factor: upscale.factor, upscaler: method.kind === 'model' ? method.name : 'Lanczos', creative: strength !== undefined };
  if (strength !== undefined) {
    const redrawn = await pipeline.generate(redraw(await encodeForRedraw(image), strength)).catch(explainForCreative);
    return { ...redrawn, settings: { ...redrawn.settings, upscale: upscaled } };
  }
  const totalMs = performance.now() - started;
  const settings: GenerationSettings = {
    prompt: options.prompt,
    negativePrompt: options.negativePrompt ?? '',
    steps: options.steps,
    guidanceScale: options.guidanceScale,
    seed: String(options.seed),
    width: image.width,
    height: image.height,
    scheduler: options.scheduler ?? pipeline.info.defaultScheduler,
    model: pipeline.info.name,
    upscale: upscaled,
  };
  return { image, settings, timings: { tokenizeMs: 0, textEncoderMs: 0, denoiseMs: 0, vaeMs: 0, totalMs, onnxMs: 0 } };
}

/** A redraw refused for memory, in words for whoever pressed Upscale (Creative): they chose no size. */
function explainForCreative(error: unknown): never {
  if (!(error instanceof NotEnoughMemoryError)) throw error;
  throw new RequestError(
    `Upscale (Creative) redraws the picture at ${error.width}x${error.height}, which needs about ${formatGigabytes(error.neededBytes)} more memory than this machine has free (${formatGigabytes(error.freeBytes)}): use Upscale instead.`,
  );
}

async function decodePng(base64: string): Promise<RgbImage> {
  const { data, info } = await sharp(Buffer.from(base64, 'base64')).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { pixels: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
}

/** The upscaled image as the file img2img takes (fastest PNG: it is decoded again at once). */
async function encodeForRedraw(image: RgbImage): Promise<string> {
  const png = await sharp(image.pixels, { raw: { width: image.width, height: image.height, channels: 3 } }).png({ compressionLevel: 0 }).toBuffer();
  return png.toString('base64');
}
