import sharp from 'sharp';
import type { StepsAnimation } from '../image/steps-animation.ts';
import type { GeneratedImage } from '../jobs/runner.ts';

/** Discord's upload limit when an interaction does not say otherwise (attachment_size_limit). */
export const DEFAULT_ATTACHMENT_LIMIT = 10 * 1024 * 1024;

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

/** A steps animation's files: the animation, then the strip of its first, middle and last frames for the embed. */
export function animationFiles(animation: StepsAnimation, baseName: string): { animation: OutgoingFile; strip: OutgoingFile } {
  return {
    animation: { name: `${baseName}-steps.${animation.format}`, data: Buffer.from(animation.data) },
    strip: { name: `${baseName}-steps.jpg`, data: Buffer.from(animation.strip) },
  };
}

export function total(files: readonly OutgoingFile[]): number {
  return files.reduce((sum, file) => sum + file.data.length, 0);
}

export function formatBytes(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${(bytes / 1024 / 1024).toFixed(1)} MiB` : `${Math.ceil(bytes / 1024)} KiB`;
}
