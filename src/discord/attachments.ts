import sharp from 'sharp';
import type { GeneratedImage } from '../jobs/runner.ts';

/** Discord's upload limit when an interaction does not say otherwise (attachment_size_limit). */
export const DEFAULT_ATTACHMENT_LIMIT = 10 * 1024 * 1024;
/** Discord's most files in one message. */
const MAX_FILES_PER_MESSAGE = 10;

export interface OutgoingFile {
  name: string;
  data: Buffer;
}

export interface AttachmentPlan {
  /** Files per message, in order; each batch fits the limit. */
  batches: OutgoingFile[][];
  /** Images that do not fit the limit even losslessly compressed. */
  tooLarge: { name: string; bytes: number }[];
}

/**
 * Fits the images into messages of at most limitBytes: PNGs as they are when they fit, otherwise each
 * image in whichever lossless form is smaller (WebP keeps the parameters in its EXIF ImageDescription),
 * spread over as many messages as needed.
 */
/** Which of the job's images (0-based) a file planned above holds: its name ends in -<n>.png or -<n>.webp. */
export function imageIndexOf(fileName: string): number | undefined {
  const match = /-(\d+)\.(?:png|webp)$/i.exec(fileName);
  return match ? Number(match[1]) - 1 : undefined;
}

/** Which of the job's images (0-based) a steps animation planned by planAnimations shows: its name ends in -<n>-steps.<format>. */
export function animationIndexOf(fileName: string): number | undefined {
  const match = /-(\d+)-steps\.\w+$/i.exec(fileName);
  return match ? Number(match[1]) - 1 : undefined;
}

export async function planAttachments(images: GeneratedImage[], limitBytes: number, baseName: string): Promise<AttachmentPlan> {
  const pngs = images.map((image, index) => ({ name: `${baseName}-${index + 1}.png`, data: Buffer.from(image.png) }));
  if (total(pngs) <= limitBytes) return { batches: [pngs], tooLarge: [] };

  const smallest = await Promise.all(
    images.map(async (image, index) => {
      const webp = await sharp(image.png)
        .webp({ lossless: true, effort: 6 })
        .withExif({ IFD0: { ImageDescription: image.parameters } })
        .toBuffer();
      return webp.length < pngs[index].data.length ? { name: `${baseName}-${index + 1}.webp`, data: webp } : pngs[index];
    }),
  );
  const plan: AttachmentPlan = { batches: [], tooLarge: [] };
  let batch: OutgoingFile[] = [];
  for (const file of smallest) {
    if (file.data.length > limitBytes) {
      plan.tooLarge.push({ name: file.name, bytes: file.data.length });
      continue;
    }
    if (batch.length > 0 && total(batch) + file.data.length > limitBytes) {
      plan.batches.push(batch);
      batch = [];
    }
    batch.push(file);
  }
  if (batch.length > 0) plan.batches.push(batch);
  return plan;
}

/**
 * Adds the images' steps animations to a plan: each beside its image when that message has room (bytes and file
 * count), else in a message after the images; then one strip of them all (each animation's first, middle and last
 * frames, a row per image) beside the first animation with room, for that message's embed (`strip`, when it fit). An animation
 * over the limit on its own joins `tooLarge`.
 */
export async function planAnimations(
  plan: AttachmentPlan,
  images: readonly GeneratedImage[],
  limitBytes: number,
  baseName: string,
): Promise<AttachmentPlan & { strip?: OutgoingFile }> {
  const animated = images.flatMap((image, index) => (image.animation ? [{ index, animation: image.animation }] : []));
  if (animated.length === 0) return plan;
  const batches = plan.batches.map((batch) => [...batch]);
  const tooLarge = [...plan.tooLarge];
  const imageMessages = batches.length;
  const fits = (batch: readonly OutgoingFile[], file: OutgoingFile) => batch.length < MAX_FILES_PER_MESSAGE && total(batch) + file.data.length <= limitBytes;
  const holding = new Set<OutgoingFile[]>();
  for (const { index, animation } of animated) {
    const file = { name: `${baseName}-${index + 1}-steps.${animation.format}`, data: Buffer.from(animation.data) };
    if (file.data.length > limitBytes) {
      tooLarge.push({ name: file.name, bytes: file.data.length });
      continue;
    }
    const home = batches.find((batch) => batch.some((placed) => imageIndexOf(placed.name) === index));
    let batch = home && fits(home, file) ? home : batches.find((later, at) => at >= imageMessages && fits(later, file));
    if (!batch) batches.push((batch = []));
    batch.push(file);
    holding.add(batch);
  }
  const strip = { name: `${baseName}-steps.jpg`, data: await stackedStrips(animated.map(({ animation }) => animation.strip)) };
  const beside = [...holding].find((batch) => fits(batch, strip));
  if (!beside) return { batches, tooLarge };
  beside.push(strip);
  return { batches, tooLarge, strip };
}

/** The strips one above the other (one strip as it is). */
async function stackedStrips(strips: readonly Uint8Array[]): Promise<Buffer> {
  if (strips.length === 1) return Buffer.from(strips[0]);
  const sizes = await Promise.all(strips.map((strip) => sharp(strip).metadata()));
  const tops = sizes.map((_, index) => sizes.slice(0, index).reduce((sum, size) => sum + size.height, 0));
  const width = Math.max(...sizes.map((size) => size.width));
  const height = sizes.reduce((sum, size) => sum + size.height, 0);
  return sharp({ create: { width, height, channels: 3, background: '#000' } })
    .composite(strips.map((strip, index) => ({ input: Buffer.from(strip), left: 0, top: tops[index] })))
    .jpeg({ quality: 85 })
    .toBuffer();
}

export function total(files: readonly OutgoingFile[]): number {
  return files.reduce((sum, file) => sum + file.data.length, 0);
}

export function formatBytes(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${(bytes / 1024 / 1024).toFixed(1)} MiB` : `${Math.ceil(bytes / 1024)} KiB`;
}
