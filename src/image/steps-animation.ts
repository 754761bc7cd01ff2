import sharp from 'sharp';
import type { PreviewCadence } from '../pipeline/preview-schedule.ts';

/** One step's picture of the image forming: a preview as the pipeline decodes it (see src/image/preview.ts). */
export interface StepFrame {
  step: number;
  /** Any format sharp reads (previews are JPEGs). */
  image: Uint8Array;
}

/** The denoising as an animation: one frame per step, ending on the final image. */
export interface StepsAnimation {
  data: Uint8Array;
  format: 'webp' | 'gif';
  /** The steps shown, in order; the last is the final image (its step is the image's step count). */
  steps: number[];
  width: number;
  height: number;
  /** The first, middle and last frames side by side (JPEG), for where an animation does not play. */
  strip: Uint8Array;
}

/**
 * The previews an animation is made of: one after every step, all decoded alike within the previews' budget, so the
 * tiny decoder only where it costs a few percent of a step (on a CPU it costs 8 to 16 % of one: BENCHMARKS.md).
 */
export const ANIMATION_FRAMES = { everySteps: 1, steady: true } as const satisfies PreviewCadence;

/** Frames are at most this many pixels on their longest side (the final image's size when it is smaller). */
const ANIMATION_SIDE = 512;
const FRAME_DELAY_MS = 120;
/** The final image stays this long before the animation starts again. */
const FINAL_FRAME_DELAY_MS = 2000;
const WEBP_QUALITY = 80;
/** libwebp's effort 1 of 6: measured on 20 frames of 512x512, 3x faster than its default and a few percent larger. */
const WEBP_EFFORT = 1;
/**
 * GIF is tried only for frames this small: there it costs about what WebP does, while at 512x512 it took 7 times as long
 * even at its lowest effort and was 2.7 times larger (20 frames, measured with sharp 0.35).
 */
const GIF_MAX_SIDE = 256;
/** Fewer frames than this and the frames are made smaller instead. */
const MIN_FRAMES = 8;
/** Frames are not made smaller than this on their longest side: no animation then. */
const MIN_SIDE = 64;
const STRIP_HEIGHT = 256;

interface RawFrame {
  step: number;
  pixels: Buffer;
}

/**
 * Makes the animation of a generation from its step frames and its final image (a PNG): an animated WebP, or for small
 * frames a GIF when that is smaller (or the `format` asked for), of at most `maxBytes`. Every step is a frame while the file fits; beyond that every second,
 * third, … step is kept (the first and the final image always), and below 8 frames the frames get smaller. Undefined
 * when not even that fits.
 */
export async function encodeStepsAnimation(
  frames: readonly StepFrame[],
  finalImage: Uint8Array,
  totalSteps: number,
  { maxBytes = Infinity, format }: { maxBytes?: number; format?: StepsAnimation['format'] } = {},
): Promise<StepsAnimation | undefined> {
  const final = await sharp(finalImage).metadata();
  const scale = Math.min(1, ANIMATION_SIDE / Math.max(final.width, final.height));
  const width = Math.max(1, Math.round(final.width * scale));
  const height = Math.max(1, Math.round(final.height * scale));
  const raw: RawFrame[] = await Promise.all(
    [...frames.filter((frame) => frame.step < totalSteps).map((frame) => ({ step: frame.step, image: frame.image })), { step: totalSteps, image: finalImage }].map(
      async ({ step, image }) => ({ step, pixels: await sharp(image).removeAlpha().resize(width, height, { fit: 'fill' }).raw().toBuffer() }),
    ),
  );
  const strip = await stripOf(raw, width, height);

  for (let stride = 1, side = Math.max(width, height); side >= MIN_SIDE; ) {
    const chosen = sampled(raw, stride);
    const frameWidth = Math.max(1, Math.round((width * side) / Math.max(width, height)));
    const frameHeight = Math.max(1, Math.round((height * side) / Math.max(width, height)));
    const encoded = await smallestEncoding(chosen, { width, height }, { width: frameWidth, height: frameHeight }, format);
    if (encoded.data.length <= maxBytes) {
      return { ...encoded, steps: chosen.map((frame) => frame.step), width: frameWidth, height: frameHeight, strip };
    }
    if (chosen.length > MIN_FRAMES) stride++;
    else side = Math.floor(side * 0.75);
  }
  return undefined;
}

/** Every `stride`-th frame counting back from the final image, and the first frame. */
function sampled(frames: readonly RawFrame[], stride: number): RawFrame[] {
  const last = frames.length - 1;
  return frames.filter((_, index) => index === 0 || (last - index) % stride === 0);
}

/** `format`: that one only; else WebP, or GIF when the frames are small and it is smaller. */
async function smallestEncoding(
  frames: readonly RawFrame[],
  source: { width: number; height: number },
  size: { width: number; height: number },
  format: StepsAnimation['format'] | undefined,
): Promise<{ data: Uint8Array; format: 'webp' | 'gif' }> {
  const pages = await Promise.all(
    frames.map((frame) =>
      size.width === source.width && size.height === source.height
        ? frame.pixels
        : sharp(frame.pixels, { raw: { ...source, channels: 3 } }).resize(size.width, size.height).raw().toBuffer(),
    ),
  );
  const animation = () => sharp(Buffer.concat(pages), { raw: { width: size.width, height: size.height * pages.length, channels: 3, pageHeight: size.height } });
  const delay = frames.map((_, index) => (index === frames.length - 1 ? FINAL_FRAME_DELAY_MS : FRAME_DELAY_MS));
  const webp = format === 'gif' ? undefined : await animation().webp({ quality: WEBP_QUALITY, effort: WEBP_EFFORT, loop: 0, delay }).toBuffer();
  const gif = format === 'gif' || (!format && Math.max(size.width, size.height) <= GIF_MAX_SIDE) ? await animation().gif({ effort: 1, loop: 0, delay }).toBuffer() : undefined;
  return gif && (!webp || gif.length < webp.length) ? { data: new Uint8Array(gif), format: 'gif' } : { data: new Uint8Array(webp!), format: 'webp' };
}

/** The first, middle and last frames side by side, each STRIP_HEIGHT high at most. */
async function stripOf(frames: readonly RawFrame[], width: number, height: number): Promise<Uint8Array> {
  const picked = [frames[0], frames[Math.floor((frames.length - 1) / 2)], frames[frames.length - 1]];
  const scale = Math.min(1, STRIP_HEIGHT / height);
  const tileWidth = Math.max(1, Math.round(width * scale));
  const tileHeight = Math.max(1, Math.round(height * scale));
  const tiles = await Promise.all(picked.map((frame) => sharp(frame.pixels, { raw: { width, height, channels: 3 } }).resize(tileWidth, tileHeight).png().toBuffer()));
  const strip = await sharp({ create: { width: tileWidth * 3, height: tileHeight, channels: 3, background: '#000' } })
    .composite(tiles.map((input, index) => ({ input, left: index * tileWidth, top: 0 })))
    .jpeg({ quality: 85 })
    .toBuffer();
  return new Uint8Array(strip);
}
