import { existsSync } from 'node:fs';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import type { onnx as OnnxTypes } from 'onnx-proto';
import type { NoiseSource } from '../schedulers/index.ts';
import { OnnxModel, floatTensor, floatTensorType, toFloat32, type FloatType, type ModelLoadOptions } from './onnx-model.ts';
import { TINY_VAE_BYTES_PER_PIXEL, readEncoderSettings, type RgbImage } from './vae.ts';
import { WorkSpace } from './work-space.ts';

/** The input a graph that draws its own noise is given instead (see exposeLatentNoise). */
export const LATENT_NOISE_INPUT = 'latent_noise';

/** diffusers' DiagonalGaussianDistribution clamps the log-variance to this range. */
const LOGVAR_MIN = -30;
const LOGVAR_MAX = 20;
/** onnx.TensorProto.DataType.FLOAT, RandomNormal's default dtype. */
const FLOAT = 1;

/**
 * What the exported encoder gives:
 * - `mean-logvar`: this project's graphs, `latent_mean` and `latent_logvar`;
 * - `parameters`: Optimum's `latent_parameters`, the mean and the (unclamped) log-variance on one axis;
 * - `latents`: an AutoencoderTiny's deterministic latents (diffusers draws nothing for it);
 * - `sample`: older exports' `latent_sample`, sampled inside the graph from noise it is now given (exposeLatentNoise).
 */
type EncoderLayout = 'mean-logvar' | 'parameters' | 'latents' | 'sample';

/**
 * VAE encoder: an 8-bit RGB image → scaled latents, as diffusers' img2img gets them:
 * `scaling_factor · latent_dist.sample(generator)` (mean + std · ε, ε the generator's next draw).
 */
export class VaeEncoder {
  private constructor(
    private readonly model: OnnxModel,
    private readonly sampleType: FloatType,
    private readonly layout: EncoderLayout,
    readonly scalingFactor: number,
    /** The memory encoding takes on the CPU beyond the weights (see readEncoderSettings). */
    readonly workSpace: WorkSpace,
  ) {}

  /** The encoder in `modelDir`, or undefined when the model came without one (text-to-image only). */
  static async load(modelDir: string, options: ModelLoadOptions): Promise<VaeEncoder | undefined> {
    const path = join(modelDir, 'vae_encoder', 'model.onnx');
    if (!existsSync(path)) return undefined;
    const model = await OnnxModel.load(path, 'vae_encoder', options, exposeLatentNoise);
    model.expectOnlyInputs(['sample', LATENT_NOISE_INPUT]);
    const layout = encoderLayout(model);
    const { scalingFactor, bytesPerPixel } = readEncoderSettings(modelDir);
    const workSpace = new WorkSpace(options.executionProvider !== 'cpu' ? 0 : layout === 'latents' ? TINY_VAE_BYTES_PER_PIXEL : bytesPerPixel);
    return new VaeEncoder(model, floatTensorType(model.input('sample')), layout, scalingFactor, workSpace);
  }

  async encode(image: RgbImage, generator: NoiseSource): Promise<Float32Array> {
    const feeds: Record<string, ort.Tensor> = { sample: floatTensor(toUnitRange(image), [1, 3, image.height, image.width], this.sampleType) };
    const latentCount = 4 * (image.height / 8) * (image.width / 8);
    let latents: Float32Array;
    switch (this.layout) {
      case 'mean-logvar': {
        const out = await this.model.runOutputs(feeds, ['latent_mean', 'latent_logvar']);
        latents = sampleGaussian(toFloat32(out.latent_mean), toFloat32(out.latent_logvar), generator);
        break;
      }
      case 'parameters': {
        const moments = toFloat32(await this.model.run(feeds, 'latent_parameters'));
        const half = moments.length / 2;
        latents = sampleGaussian(moments.subarray(0, half), moments.subarray(half), generator);
        break;
      }
      case 'latents':
        latents = Float32Array.from(toFloat32(await this.model.run(feeds, 'latents')));
        break;
      case 'sample':
        feeds[LATENT_NOISE_INPUT] = floatTensor(generator.randn(latentCount), [1, 4, image.height / 8, image.width / 8], this.model.input(LATENT_NOISE_INPUT).type === 'float16' ? 'float16' : 'float32');
        latents = Float32Array.from(toFloat32(await this.model.run(feeds, 'latent_sample')));
        break;
    }
    this.workSpace.ran(image.width * image.height);
    if (latents.length !== latentCount) {
      throw new Error(`vae_encoder: expected ${latentCount} latent values for a ${image.width}x${image.height} image, got ${latents.length}`);
    }
    return latents.map((v) => v * this.scalingFactor);
  }

  release(): Promise<void> {
    return this.model.release();
  }
}

function encoderLayout(model: OnnxModel): EncoderLayout {
  if (model.hasOutput('latent_mean') && model.hasOutput('latent_logvar')) return 'mean-logvar';
  if (model.hasOutput('latent_parameters')) return 'parameters';
  if (model.hasOutput('latents')) return 'latents';
  if (model.hasOutput('latent_sample') && model.hasInput(LATENT_NOISE_INPUT)) return 'sample';
  if (model.hasOutput('latent_sample')) {
    throw new Error('vae_encoder: its latent_sample is drawn from noise inside the graph that could not be replaced, so a seed would not reproduce an image; export the VAE again (Optimum writes latent_parameters) or import the PyTorch model');
  }
  throw new Error('vae_encoder: unsupported outputs (expected latent_mean + latent_logvar, latent_parameters, latents or latent_sample)');
}

/**
 * mean + exp(logvar / 2) · ε, in float32 as torch computes DiagonalGaussianDistribution.sample: ε is the
 * generator's next draw, which is why img2img draws before the noise it adds.
 */
function sampleGaussian(mean: Float32Array, logvar: Float32Array, generator: NoiseSource): Float32Array {
  const f = Math.fround;
  const epsilon = generator.randn(mean.length);
  return mean.map((m, i) => {
    const clamped = Math.min(Math.max(logvar[i], LOGVAR_MIN), LOGVAR_MAX);
    const std = f(Math.exp(f(0.5 * clamped)));
    return m + f(std * epsilon[i]);
  });
}

/** Interleaved RGB bytes → planar [3, H, W] in [-1, 1], as diffusers' VaeImageProcessor: 2·(x / 255) − 1 in float32. */
function toUnitRange(image: RgbImage): Float32Array {
  const plane = image.width * image.height;
  const out = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    for (let channel = 0; channel < 3; channel++) {
      out[channel * plane + i] = Math.fround(2 * Math.fround(image.pixels[i * 3 + channel] / 255)) - 1;
    }
  }
  return out;
}

/**
 * Older exports (diffusers' ONNX converter, early Optimum) sample `latent_sample` inside the graph with a
 * RandomNormal(Like) node, which no seed reaches. That node becomes the input `latent_noise`, so the pipeline's
 * generator draws ε as diffusers would.
 */
export function exposeLatentNoise(model: OnnxTypes.IModelProto): boolean {
  const graph = model.graph;
  const nodes = graph?.node ?? [];
  const random = nodes.filter((node) => node.opType === 'RandomNormalLike' || node.opType === 'RandomNormal');
  if (!graph || random.length !== 1 || !random[0].output?.[0]) return false;
  const [node] = random;
  const dtype = Number(node.attribute?.find((attribute) => attribute.name === 'dtype')?.i?.toString() ?? FLOAT);
  graph.node = nodes.map((candidate) =>
    candidate === node ? { opType: 'Identity', input: [LATENT_NOISE_INPUT], output: [node.output![0]], name: `${node.name ?? 'random'}_as_input` } : candidate,
  );
  graph.input = [
    ...(graph.input ?? []),
    { name: LATENT_NOISE_INPUT, type: { tensorType: { elemType: dtype, shape: { dim: [{ dimParam: 'batch' }, { dimValue: 4 }, { dimParam: 'latent_height' }, { dimParam: 'latent_width' }] } } } },
  ];
  return true;
}
