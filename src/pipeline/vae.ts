import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  OnnxModel,
  floatTensor,
  floatTensorType,
  toFloat32,
  type FloatType,
  type ModelLoadOptions,
} from './onnx-model.ts';
import type { LatentSize } from './unet.ts';
import type { GpuFusions } from './gpu-fusion.ts';
import { WorkSpace } from './work-space.ts';

const DEFAULT_SCALING_FACTOR = 0.18215;
const PLAIN_LAYOUT_FROM_PIXELS = 1024 * 1024;
const SD_VAE_WIDTHS = [128, 256] as const;
/** Measured on SD's VAE (see bytesPerPixel). */
const SD_VAE_BYTES_PER_PIXEL = { decoder: { blocked: 4_300, plain: 3_300 }, encoder: 2_100 } as const;
/** Either half of TAESD (64 channels wide throughout), measured the same way: 1.1 KB a pixel at 512x512 and 1024x1024. */
export const TINY_VAE_BYTES_PER_PIXEL = 1_200;

/** onnxruntime's blocked NCHWc convolution layout on the CPU, or the graph's own. */
export type ConvolutionLayout = 'blocked' | 'plain';

export interface RgbImage {
  /** Interleaved 8-bit RGB, row-major. */
  pixels: Uint8Array;
  width: number;
  height: number;
}

/** VAE decoder: latents → an 8-bit RGB image. */
export class VaeDecoder {
  private constructor(
    private readonly model: OnnxModel,
    private readonly latentType: FloatType,
    private readonly outputName: string,
    readonly scalingFactor: number,
    /** An AutoencoderTiny (TAESD): decodes in a few percent of a full VAE's time, at a little less detail. */
    readonly isTiny: boolean,
    /** The convolution layout asked of onnxruntime on the CPU (see load). */
    readonly layout: ConvolutionLayout,
    /** The memory decoding takes on the CPU beyond the weights (see decoderBytesPerPixel). */
    readonly workSpace: WorkSpace,
  ) {}

  /**
   * `nativePixels`: the size of the images the model is made for. On the CPU, onnxruntime's blocked (NCHWc)
   * convolution layout copies each feature map into and out of that layout. For SD's VAE (the same in SDXL) that
   * made decoding 1024x1024 peak 1.1-1.24 GB higher (4.89 against 3.65 GB) for no sure gain in time, while at
   * 512x512 it is faster at the same peak (BENCHMARKS.md, "The VAE decoder's layout"). So a full VAE of a model
   * made for 1024x1024 decodes in the plain layout; TAESD's narrow maps keep the blocked one.
   */
  static async load(modelDir: string, options: ModelLoadOptions, nativePixels = 0): Promise<VaeDecoder> {
    const config = readVaeConfig(modelDir, 'vae_decoder');
    const isTiny = config._class_name === 'AutoencoderTiny';
    const layout: ConvolutionLayout = isTiny || nativePixels < PLAIN_LAYOUT_FROM_PIXELS ? 'blocked' : 'plain';
    const model = await OnnxModel.load(join(modelDir, 'vae_decoder', 'model.onnx'), 'vae_decoder', { ...options, blockedLayout: layout === 'blocked' });
    model.expectOnlyInputs(['latent_sample']);
    const latent = model.input('latent_sample');
    const workSpace = new WorkSpace(options.executionProvider !== 'cpu' ? 0 : isTiny ? TINY_VAE_BYTES_PER_PIXEL : decoderBytesPerPixel(config, layout));
    return new VaeDecoder(model, floatTensorType(latent), model.outputName('sample'), scalingFactorOf(config), isTiny, layout, workSpace);
  }

  async decode(latents: Float32Array, size: LatentSize): Promise<RgbImage> {
    const scaled = new Float32Array(latents.length);
    for (let i = 0; i < latents.length; i++) scaled[i] = latents[i] / this.scalingFactor;
    const output = await this.model.run({ latent_sample: floatTensor(scaled, [1, 4, size.height, size.width], this.latentType) }, this.outputName);
    const [, channels, height, width] = output.dims;
    this.workSpace.ran(width * height);
    if (channels !== 3) throw new Error(`vae_decoder: expected 3 output channels, got ${channels}`);
    return { pixels: toRgb8(toFloat32(output), width, height), width, height };
  }

  /** Attention blocks running as onnxruntime's fused MultiHeadAttention. */
  get fusedAttentions(): number {
    return this.model.fusedAttentions;
  }

  /** What the GPU rewrite fused at load (see gpu-fusion.ts); undefined when it did not run. */
  get gpuFusions(): GpuFusions | undefined {
    return this.model.gpuFusions;
  }

  release(): Promise<void> {
    return this.model.release();
  }
}

/**
 * The CPU memory an AutoencoderKL half takes per image pixel beyond its weights, in float32: its largest feature
 * maps are those at full size, of its first two widths (128 and 256 channels for SD's and SDXL's VAE). Measured on
 * that VAE, attention fused as the pipeline runs it (BENCHMARKS.md, "The VAE's work space"): the decoder 4.2 KB a
 * pixel in the blocked layout at 512x512 and 1024x1024, 3.2 KB in the plain one at 1024x1024; the encoder 2.0 KB.
 * Other widths are scaled from these, with a little to spare.
 */
function bytesPerPixel(config: VaeConfig, measuredForSd: number): number {
  const widths = Array.isArray(config.block_out_channels) ? config.block_out_channels.filter((width) => typeof width === 'number') : [];
  const [first, second] = widths.length >= 2 ? widths : SD_VAE_WIDTHS;
  return (measuredForSd * (first + second)) / (SD_VAE_WIDTHS[0] + SD_VAE_WIDTHS[1]);
}

function decoderBytesPerPixel(config: VaeConfig, layout: ConvolutionLayout): number {
  return bytesPerPixel(config, SD_VAE_BYTES_PER_PIXEL.decoder[layout]);
}

/** The encoder's scaling factor and CPU bytes per pixel (see bytesPerPixel), from the config beside the VAE. */
export function readEncoderSettings(modelDir: string): { scalingFactor: number; bytesPerPixel: number } {
  const config = readVaeConfig(modelDir, 'vae_encoder');
  return { scalingFactor: scalingFactorOf(config), bytesPerPixel: bytesPerPixel(config, SD_VAE_BYTES_PER_PIXEL.encoder) };
}

interface VaeConfig {
  scaling_factor?: unknown;
  _class_name?: unknown;
  block_out_channels?: unknown;
}

/**
 * The config.json exporters write beside a VAE half, for its class and scaling factor: the component's own, else the
 * other half's (the same VAE), else none (AutoencoderKL, 0.18215).
 */
function readVaeConfig(modelDir: string, component: 'vae_decoder' | 'vae_encoder'): VaeConfig {
  const other = component === 'vae_decoder' ? 'vae_encoder' : 'vae_decoder';
  const configPath = [component, other].map((folder) => join(modelDir, folder, 'config.json')).find((path) => existsSync(path));
  return configPath ? JSON.parse(readFileSync(configPath, 'utf8')) : {};
}

function scalingFactorOf(config: VaeConfig): number {
  return typeof config.scaling_factor === 'number' ? config.scaling_factor : DEFAULT_SCALING_FACTOR;
}

/** Planar [3, H, W] in [-1, 1] → interleaved RGB bytes, as diffusers: numpy round(clamp(x/2 + 0.5, 0, 1) * 255). */
export function toRgb8(planar: Float32Array, width: number, height: number): Uint8Array {
  const plane = width * height;
  const pixels = new Uint8Array(plane * 3);
  for (let channel = 0; channel < 3; channel++) {
    const offset = channel * plane;
    for (let i = 0; i < plane; i++) {
      const value = Math.fround(Math.fround(planar[offset + i] / 2) + 0.5);
      const clamped = value < 0 ? 0 : value > 1 ? 1 : value;
      pixels[i * 3 + channel] = roundHalfToEven(Math.fround(clamped * 255));
    }
  }
  return pixels;
}

function roundHalfToEven(value: number): number {
  const rounded = Math.round(value);
  return rounded - value === 0.5 && rounded % 2 === 1 ? rounded - 1 : rounded;
}
