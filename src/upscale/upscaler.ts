import sharp from 'sharp';
import { OnnxModel, floatTensor, floatTensorType, toFloat32, type FloatType, type ModelLoadOptions } from '../pipeline/onnx-model.ts';
import type { RgbImage } from '../pipeline/vae.ts';
import { tilesFor } from './tiles.ts';

/** Input pixels a window reads beyond its core on each side: more than the receptive field the seams could show. */
export const DEFAULT_OVERLAP = 16;
/** Input pixels a side of a window of a model that takes any size: bounds memory (see BENCHMARKS.md). */
export const DEFAULT_WINDOW = 256;

export interface UpscalerOptions {
  /** The longest window side for a model that takes any size (a model exported for one size uses that). */
  window?: number;
  overlap?: number;
  signal?: AbortSignal;
  /** Told after every window: done of total. */
  onTile?: (done: number, total: number) => void;
}

/** How an upscale was made: by the named model (then resized to the exact factor where needed), or by Lanczos alone. */
export type UpscaleMethod = { kind: 'model'; name: string } | { kind: 'lanczos' };

export interface UpscaledImage {
  image: RgbImage;
  method: UpscaleMethod;
}

/**
 * A Real-ESRGAN-class super-resolution model in ONNX: RGB in [0, 1], [1, 3, H, W] → [1, 3, sH, sW]. Its scale s is
 * measured once at load; a model exported for one input size is run on windows of exactly that size.
 */
export class OnnxUpscaler {
  private constructor(
    readonly name: string,
    private readonly model: OnnxModel,
    private readonly inputName: string,
    private readonly outputName: string,
    private readonly inputType: FloatType,
    /** The window size a fixed-size export takes. */
    private readonly fixedWindow: { width: number; height: number } | undefined,
    readonly scale: number,
  ) {}

  static async load(path: string, name: string, options: ModelLoadOptions): Promise<OnnxUpscaler> {
    const model = await OnnxModel.load(path, 'upscaler', { ...options, fuseAttention: false });
    const [inputName, ...others] = model.inputNames;
    if (!inputName || others.length > 0) throw new Error(`upscaler ${name}: expected one image input, found ${model.inputNames.join(', ') || 'none'}`);
    const input = model.input(inputName);
    const [, channels, height, width] = input.shape;
    if (input.shape.length !== 4 || (typeof channels === 'number' && channels !== 3)) {
      throw new Error(`upscaler ${name}: its input ${inputName} is [${input.shape.join(', ')}], not an RGB image [1, 3, H, W]`);
    }
    const fixedWindow = typeof width === 'number' && typeof height === 'number' && width > 0 && height > 0 ? { width, height } : undefined;
    const inputType = floatTensorType(input);
    const probe = fixedWindow ?? { width: 16, height: 16 };
    const outputName = model.outputName('output');
    const output = await model.run({ [inputName]: floatTensor(new Float32Array(3 * probe.width * probe.height), [1, 3, probe.height, probe.width], inputType) }, outputName);
    const scale = output.dims[3] / probe.width;
    if (!Number.isInteger(scale) || scale < 1 || output.dims[2] / probe.height !== scale || output.dims[1] !== 3) {
      throw new Error(`upscaler ${name}: a ${probe.width}x${probe.height} input gave [${output.dims.join(', ')}], not a whole-number upscale of an RGB image`);
    }
    return new OnnxUpscaler(name, model, inputName, outputName, inputType, fixedWindow, scale);
  }

  /** The image `scale` times larger, window by window. */
  async upscale(image: RgbImage, options: UpscalerOptions = {}): Promise<RgbImage> {
    const { width, height } = image;
    const overlap = options.overlap ?? DEFAULT_OVERLAP;
    const window = this.fixedWindow ?? { width: options.window ?? DEFAULT_WINDOW, height: options.window ?? DEFAULT_WINDOW };
    const s = this.scale;
    const out = new Uint8Array(width * s * height * s * 3);
    const tiles = tilesFor(width, height, window, overlap);
    for (const [index, { x, y }] of tiles.entries()) {
      if (options.signal?.aborted) throw options.signal.reason ?? new Error('upscale cancelled');
      // A fixed-size export gets its size even from a smaller image: the rest is the edge pixels repeated.
      const runWidth = this.fixedWindow?.width ?? x.readLength;
      const runHeight = this.fixedWindow?.height ?? y.readLength;
      const input = planarWindow(image, x.readFrom, y.readFrom, x.readLength, y.readLength, runWidth, runHeight);
      const result = toFloat32(await this.model.run({ [this.inputName]: floatTensor(input, [1, 3, runHeight, runWidth], this.inputType) }, this.outputName));
      const resultWidth = runWidth * s;
      const plane = resultWidth * runHeight * s;
      for (let row = y.coreFrom * s; row < y.coreTo * s; row++) {
        const sourceRow = (row - y.readFrom * s) * resultWidth;
        for (let column = x.coreFrom * s; column < x.coreTo * s; column++) {
          const source = sourceRow + column - x.readFrom * s;
          const target = (row * width * s + column) * 3;
          for (let channel = 0; channel < 3; channel++) out[target + channel] = toByte(result[channel * plane + source]);
        }
      }
      options.onTile?.(index + 1, tiles.length);
    }
    return { pixels: out, width: width * s, height: height * s };
  }

  release(): Promise<void> {
    return this.model.release();
  }
}

/**
 * The image `factor` times larger: by the model as many times as it takes to reach the factor (then Lanczos down to
 * it exactly, as AUTOMATIC1111 does with a ×4 model asked for ×2), or by Lanczos alone without a model.
 */
export async function upscaleImage(image: RgbImage, factor: number, upscaler: OnnxUpscaler | undefined, options: UpscalerOptions = {}): Promise<UpscaledImage> {
  const target = { width: Math.round(image.width * factor), height: Math.round(image.height * factor) };
  if (!upscaler) return { image: await lanczosResize(image, target), method: { kind: 'lanczos' } };
  let current = image;
  while (current.width < target.width || current.height < target.height) current = await upscaler.upscale(current, options);
  const exact = current.width === target.width && current.height === target.height ? current : await lanczosResize(current, target);
  return { image: exact, method: { kind: 'model', name: upscaler.name } };
}

export async function lanczosResize(image: RgbImage, size: { width: number; height: number }): Promise<RgbImage> {
  const { data, info } = await sharp(image.pixels, { raw: { width: image.width, height: image.height, channels: 3 } })
    .resize(size.width, size.height, { kernel: 'lanczos3', fit: 'fill' })
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { pixels: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
}

/**
 * The window [left, left + width) × [top, top + height) as planar RGB in [0, 1], `runWidth` × `runHeight` with the
 * window's last column and row repeated where the run is larger than the window.
 */
function planarWindow(image: RgbImage, left: number, top: number, width: number, height: number, runWidth: number, runHeight: number): Float32Array {
  const plane = runWidth * runHeight;
  const out = new Float32Array(3 * plane);
  for (let row = 0; row < runHeight; row++) {
    const sourceRow = top + Math.min(row, height - 1);
    for (let column = 0; column < runWidth; column++) {
      const source = (sourceRow * image.width + left + Math.min(column, width - 1)) * 3;
      const target = row * runWidth + column;
      for (let channel = 0; channel < 3; channel++) out[channel * plane + target] = image.pixels[source + channel] / 255;
    }
  }
  return out;
}

function toByte(value: number): number {
  return Math.round(Math.min(Math.max(value, 0), 1) * 255);
}
