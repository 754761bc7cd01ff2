import { join } from 'node:path';
import sharp from 'sharp';
import { OnnxModel, floatTensor, floatTensorType, toFloat32, type FloatType, type ModelLoadOptions } from './onnx-model.ts';
import type { RgbImage } from './vae.ts';

/** CLIPImageProcessor's normalisation (OpenAI CLIP's statistics), per RGB channel. */
const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073];
const CLIP_STD = [0.26862954, 0.26130258, 0.27577711];
const DEFAULT_INPUT_SIZE = 224;
/** What a graph the project built outputs, for diffusers' forward() scoring (see safetyScores). */
const DISTANCE_OUTPUTS = ['cos_dist', 'special_cos_dist', 'concept_embeds_weights', 'special_care_embeds_weights'];

/** What diffusers' StableDiffusionSafetyChecker says of one image. */
export interface SafetyVerdict {
  /** has_nsfw_concepts: some concept's score is above 0. */
  nsfw: boolean;
  /**
   * Per concept, round(cosine − threshold + adjustment, 3), as diffusers' forward() computes them; absent for an
   * export that outputs only its verdict (diffusers' and Optimum's ONNX exports run forward_onnx).
   */
  conceptScores?: number[];
  specialScores?: number[];
}

type Outputs = { kind: 'distances' } | { kind: 'verdict'; imagesType: FloatType };

/**
 * The optional safety checker (diffusers' StableDiffusionSafetyChecker) as an ONNX graph: either one the project
 * built (src/graphs/safety-checker.ts: cosine distances and thresholds out, scored here exactly as diffusers'
 * forward() scores them), or a diffusers/Optimum export (clip_input and images in, has_nsfw_concepts out).
 */
export class SafetyChecker {
  private constructor(
    private readonly model: OnnxModel,
    private readonly inputType: FloatType,
    private readonly inputSize: number,
    private readonly outputs: Outputs,
  ) {}

  /** `dir` holds model.onnx (a model's safety_checker/ folder, or one model:import wrote). */
  static async load(dir: string, options: ModelLoadOptions): Promise<SafetyChecker> {
    const model = await OnnxModel.load(join(dir, 'model.onnx'), 'safety checker', { ...options, fuseAttention: false });
    const input = model.input('clip_input');
    const [, channels, height, width] = input.shape;
    if (input.shape.length !== 4 || (typeof channels === 'number' && channels !== 3)) {
      throw new Error(`safety checker: its input clip_input is [${input.shape.join(', ')}], not CLIP's [batch, 3, 224, 224]`);
    }
    const size = typeof height === 'number' && height > 0 ? height : typeof width === 'number' && width > 0 ? width : DEFAULT_INPUT_SIZE;
    let outputs: Outputs;
    if (DISTANCE_OUTPUTS.every((name) => model.hasOutput(name))) {
      model.expectOnlyInputs(['clip_input']);
      outputs = { kind: 'distances' };
    } else if (model.hasOutput('has_nsfw_concepts')) {
      model.expectOnlyInputs(['clip_input', 'images']);
      outputs = { kind: 'verdict', imagesType: floatTensorType(model.input('images')) };
    } else {
      throw new Error(`safety checker: its outputs (${model.outputNames.join(', ')}) are neither has_nsfw_concepts nor ${DISTANCE_OUTPUTS.join(', ')}`);
    }
    return new SafetyChecker(model, floatTensorType(input), size, outputs);
  }

  async check(image: RgbImage): Promise<SafetyVerdict> {
    const clipInput = floatTensor(await clipImageInput(image, this.inputSize), [1, 3, this.inputSize, this.inputSize], this.inputType);
    if (this.outputs.kind === 'verdict') {
      // The export blacks out flagged images itself; only its verdict is used.
      const images = floatTensor(Float32Array.from(image.pixels, (value) => value / 255), [1, image.height, image.width, 3], this.outputs.imagesType);
      const verdict = await this.model.run({ clip_input: clipInput, images }, 'has_nsfw_concepts');
      return { nsfw: Boolean(Number(verdict.data[0])) };
    }
    const out = await this.model.runOutputs({ clip_input: clipInput }, DISTANCE_OUTPUTS);
    const [cosines, specialCosines, thresholds, specialThresholds] = DISTANCE_OUTPUTS.map((name) => toFloat32(out[name]));
    return safetyScores({ cosines, specialCosines, thresholds, specialThresholds });
  }

  release(): Promise<void> {
    return this.model.release();
  }
}

export interface ConceptDistances {
  cosines: ArrayLike<number>;
  specialCosines: ArrayLike<number>;
  thresholds: ArrayLike<number>;
  specialThresholds: ArrayLike<number>;
}

/**
 * StableDiffusionSafetyChecker.forward's scoring of one image: each special-care concept scores
 * round(cos − threshold + adjustment, 3), where the adjustment becomes 0.01 once one has scored above 0 (for the
 * special concepts after it and for every concept); each concept scores the same way; the image is NSFW when a
 * concept (not a special-care one) scores above 0.
 */
export function safetyScores({ cosines, specialCosines, thresholds, specialThresholds }: ConceptDistances): SafetyVerdict {
  let adjustment = 0;
  const specialScores = Array.from(specialCosines, (cosine, index) => {
    const score = roundTo3(cosine - specialThresholds[index] + adjustment);
    if (score > 0) adjustment = 0.01;
    return score;
  });
  const conceptScores = Array.from(cosines, (cosine, index) => roundTo3(cosine - thresholds[index] + adjustment));
  return { nsfw: conceptScores.some((score) => score > 0), conceptScores, specialScores };
}

/** Python's round(x, 3) on a NumPy float: to the nearest thousandth, halves to even. */
function roundTo3(value: number): number {
  const scaled = value * 1000;
  const nearest = Math.round(scaled);
  const even = Math.abs(scaled % 1) === 0.5 && nearest % 2 !== 0 ? nearest - 1 : nearest;
  return even / 1000;
}

/**
 * CLIPImageProcessor as the safety checker's feature extractor runs it: the shortest side resized to `size`
 * (bicubic), the centre `size`×`size` cropped, scaled to [0, 1] and normalised with CLIP's mean and std; planar
 * [3, size, size].
 */
export async function clipImageInput(image: RgbImage, size: number): Promise<Float32Array> {
  const { width, height } = image;
  const shortest = Math.min(width, height);
  const resizedWidth = width === shortest ? size : Math.floor((size * width) / shortest);
  const resizedHeight = height === shortest ? size : Math.floor((size * height) / shortest);
  let pixels = image.pixels;
  if (resizedWidth !== width || resizedHeight !== height) {
    pixels = new Uint8Array(
      await sharp(image.pixels, { raw: { width, height, channels: 3 } })
        .resize(resizedWidth, resizedHeight, { kernel: 'cubic', fit: 'fill' })
        .raw()
        .toBuffer(),
    );
  }
  const top = Math.floor((resizedHeight - size) / 2);
  const left = Math.floor((resizedWidth - size) / 2);
  const planar = new Float32Array(3 * size * size);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const source = ((top + y) * resizedWidth + left + x) * 3;
      for (let channel = 0; channel < 3; channel++) {
        planar[channel * size * size + y * size + x] = (pixels[source + channel] / 255 - CLIP_MEAN[channel]) / CLIP_STD[channel];
      }
    }
  }
  return planar;
}
