import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { safetyCheckerParameters } from '../src/graphs/components.ts';
import { mulberry32 } from '../src/graphs/weights.ts';
import { importSafetyChecker } from '../src/import/safety-checker.ts';
import { SafetyChecker, clipImageInput } from '../src/pipeline/safety-checker.ts';
import type { RgbImage } from '../src/pipeline/vae.ts';
import { safetensorsBytes, type TensorSpec } from './safetensors-file.ts';
import { TINY_SAFETY_CHECKER, tinyCheckerWeights, writeDecidedSafetyChecker, writeTinySafetyChecker } from './safety-checker-model.ts';

/*
 * The checker against diffusers' StableDiffusionSafetyChecker.forward, computed here independently: the tiny
 * vision tower in plain TypeScript (float64) on the same pixels, then the scoring loop as diffusers writes it.
 */

const MEAN = [0.48145466, 0.4578275, 0.40821073];
const STD = [0.26862954, 0.26130258, 0.27577711];
const LOAD = { executionProvider: 'cpu', clock: { runMs: 0 }, fuseAttention: false } as const;

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'safety-checker-test-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

function randomImage(width: number, height: number, seed: number): RgbImage {
  const random = mulberry32(seed);
  return { width, height, pixels: Uint8Array.from({ length: width * height * 3 }, () => Math.floor(random() * 256)) };
}

type Weights = Map<string, Float32Array>;

/** y = W·x + b for torch's [out, in] weight. */
function linear(weights: Weights, name: string, x: number[], bias = true): number[] {
  const w = weights.get(`${name}.weight`)!;
  const inputs = x.length;
  const out = w.length / inputs;
  const b = bias ? weights.get(`${name}.bias`)! : undefined;
  return Array.from({ length: out }, (_, o) => {
    let sum = b ? b[o] : 0;
    for (let i = 0; i < inputs; i++) sum += w[o * inputs + i] * x[i];
    return sum;
  });
}

function layerNorm(weights: Weights, name: string, x: number[]): number[] {
  const mean = x.reduce((a, b) => a + b, 0) / x.length;
  const variance = x.reduce((a, b) => a + (b - mean) ** 2, 0) / x.length;
  const scale = weights.get(`${name}.weight`)!;
  const shift = weights.get(`${name}.bias`)!;
  return x.map((value, i) => ((value - mean) / Math.sqrt(variance + 1e-5)) * scale[i] + shift[i]);
}

/** transformers' CLIPVisionModel pooled output, then visual_projection, for one planar [3, S, S] input. */
function imageEmbedding(weights: Weights, input: Float32Array): number[] {
  const { hidden_size: hidden, patch_size: patch, image_size: size, num_hidden_layers: layers, num_attention_heads: heads } = TINY_SAFETY_CHECKER.vision_config;
  const p = 'vision_model.vision_model';
  const grid = size / patch;
  const conv = weights.get(`${p}.embeddings.patch_embedding.weight`)!;
  const tokens: number[][] = [Array.from(weights.get(`${p}.embeddings.class_embedding`)!)];
  for (let py = 0; py < grid; py++) {
    for (let px = 0; px < grid; px++) {
      tokens.push(
        Array.from({ length: hidden }, (_, c) => {
          let sum = 0;
          for (let ic = 0; ic < 3; ic++)
            for (let ky = 0; ky < patch; ky++)
              for (let kx = 0; kx < patch; kx++) sum += conv[((c * 3 + ic) * patch + ky) * patch + kx] * input[ic * size * size + (py * patch + ky) * size + px * patch + kx];
          return sum;
        }),
      );
    }
  }
  const positions = weights.get(`${p}.embeddings.position_embedding.weight`)!;
  let states = tokens.map((token, t) => layerNorm(weights, `${p}.pre_layrnorm`, token.map((value, c) => value + positions[t * hidden + c])));
  const headSize = hidden / heads;
  for (let layer = 0; layer < layers; layer++) {
    const l = `${p}.encoder.layers.${layer}`;
    const normed = states.map((x) => layerNorm(weights, `${l}.layer_norm1`, x));
    const [q, k, v] = ['q_proj', 'k_proj', 'v_proj'].map((projection) => normed.map((x) => linear(weights, `${l}.self_attn.${projection}`, x)));
    const attended = q.map((query) => {
      const out = new Array<number>(hidden).fill(0);
      for (let h = 0; h < heads; h++) {
        const scores = k.map((key) => {
          let dot = 0;
          for (let d = 0; d < headSize; d++) dot += query[h * headSize + d] * key[h * headSize + d];
          return dot / Math.sqrt(headSize);
        });
        const top = Math.max(...scores);
        const exps = scores.map((score) => Math.exp(score - top));
        const total = exps.reduce((a, b) => a + b, 0);
        exps.forEach((e, t) => {
          for (let d = 0; d < headSize; d++) out[h * headSize + d] += (e / total) * v[t][h * headSize + d];
        });
      }
      return linear(weights, `${l}.self_attn.out_proj`, out);
    });
    states = states.map((x, t) => x.map((value, c) => value + attended[t][c]));
    states = states.map((x) => {
      const expanded = linear(weights, `${l}.mlp.fc1`, layerNorm(weights, `${l}.layer_norm2`, x)).map((value) => value / (1 + Math.exp(-1.702 * value)));
      const back = linear(weights, `${l}.mlp.fc2`, expanded);
      return x.map((value, c) => value + back[c]);
    });
  }
  return linear(weights, 'visual_projection', layerNorm(weights, `${p}.post_layernorm`, states[0]), false);
}

function cosines(embedding: number[], concepts: Float32Array): number[] {
  const width = embedding.length;
  const norm = (values: ArrayLike<number>) => Math.sqrt(Array.from(values).reduce((a, b) => a + b * b, 0));
  return Array.from({ length: concepts.length / width }, (_, row) => {
    const concept = concepts.subarray(row * width, (row + 1) * width);
    return embedding.reduce((sum, value, i) => sum + value * concept[i], 0) / (norm(embedding) * norm(concept));
  });
}

/** numpy's round(x, 3): rint of x·1000 (halves to even), over 1000. */
function numpyRound3(x: number): number {
  const y = x * 1000;
  const floor = Math.floor(y);
  const rint = y - floor === 0.5 ? (floor % 2 === 0 ? floor : floor + 1) : Math.round(y);
  return rint / 1000;
}

/** diffusers' StableDiffusionSafetyChecker.forward, for one image, line by line. */
function diffusersForward(cosDist: number[], specialCosDist: number[], conceptWeights: Float32Array, specialWeights: Float32Array) {
  const result = { special_scores: [] as number[], special_care: [] as number[], concept_scores: [] as number[], bad_concepts: [] as number[] };
  let adjustment = 0.0;
  for (let conceptIdx = 0; conceptIdx < specialCosDist.length; conceptIdx++) {
    result.special_scores[conceptIdx] = numpyRound3(specialCosDist[conceptIdx] - specialWeights[conceptIdx] + adjustment);
    if (result.special_scores[conceptIdx] > 0) {
      result.special_care.push(conceptIdx);
      adjustment = 0.01;
    }
  }
  for (let conceptIdx = 0; conceptIdx < cosDist.length; conceptIdx++) {
    result.concept_scores[conceptIdx] = numpyRound3(cosDist[conceptIdx] - conceptWeights[conceptIdx] + adjustment);
    if (result.concept_scores[conceptIdx] > 0) result.bad_concepts.push(conceptIdx);
  }
  return { ...result, has_nsfw_concepts: result.bad_concepts.length > 0 };
}

/** The image CLIPImageProcessor makes of a 224x224 picture (no resize, no crop): x/255 normalised, planar. */
function normalizedPlanar(image: RgbImage): Float32Array {
  const { width, height } = image;
  const out = new Float32Array(3 * width * height);
  for (let i = 0; i < width * height; i++) for (let c = 0; c < 3; c++) out[c * width * height + i] = (image.pixels[i * 3 + c] / 255 - MEAN[c]) / STD[c];
  return out;
}

describe('safety checker', () => {
  const image = randomImage(224, 224, 11);
  const weights = tinyCheckerWeights();
  const embedding = imageEmbedding(weights, normalizedPlanar(image));
  const cos = cosines(embedding, weights.get('concept_embeds')!);
  const specialCos = cosines(embedding, weights.get('special_care_embeds')!);

  /**
   * Thresholds set at a margin below each cosine (a margin > 0 scores above 0): far from every rounding boundary
   * but the ones a case aims at, so float32 against float64 cannot change a rounded score.
   */
  async function checkWithMargins(name: string, conceptMargins: Record<number, number>, specialMargins: Record<number, number>) {
    const steered = new Map(weights);
    const thresholds = Float32Array.from(cos, (value, i) => value - (conceptMargins[i] ?? -0.2));
    const specialThresholds = Float32Array.from(specialCos, (value, i) => value - (specialMargins[i] ?? -0.3));
    steered.set('concept_embeds_weights', thresholds);
    steered.set('special_care_embeds_weights', specialThresholds);
    const dir = join(root, name);
    await writeTinySafetyChecker(dir, steered);
    const checker = await SafetyChecker.load(dir, LOAD);
    try {
      const verdict = await checker.check(image);
      const expected = diffusersForward(cos, specialCos, thresholds, specialThresholds);
      expect(verdict).toEqual({ nsfw: expected.has_nsfw_concepts, conceptScores: expected.concept_scores, specialScores: expected.special_scores });
      return expected;
    } finally {
      await checker.release();
    }
  }

  it('a score that rounds to 0 is not a hit; without a special-care hit no adjustment applies', async () => {
    const expected = await checkWithMargins('no-hit', { 0: 0.0004, 1: -0.005 }, {});
    expect(expected.has_nsfw_concepts).toBe(false);
    expect(expected.concept_scores.slice(0, 2)).toEqual([0, -0.005]);
  });

  it('a concept scoring 0.001 flags the image', async () => {
    const expected = await checkWithMargins('hit', { 5: 0.0006 }, {});
    expect(expected.has_nsfw_concepts).toBe(true);
    expect(expected.bad_concepts).toEqual([5]);
  });

  it('a special-care hit adds 0.01 to the special concepts after it and to every concept', async () => {
    const expected = await checkWithMargins('special-first', { 0: 0.0004, 1: -0.005 }, { 0: 0.02, 1: -0.005 });
    expect(expected.special_scores.slice(0, 2)).toEqual([0.02, 0.005]);
    expect(expected.concept_scores.slice(0, 2)).toEqual([0.01, 0.005]);
    expect(expected.has_nsfw_concepts).toBe(true);
  });

  it('a special-care hit alone does not flag the image, and does not adjust the special concepts before it', async () => {
    const expected = await checkWithMargins('special-last', {}, { 0: -0.005, 2: 0.02 });
    expect(expected.special_scores).toEqual([-0.005, -0.3, 0.02]);
    expect(expected.has_nsfw_concepts).toBe(false);
  });
});

describe('CLIPImageProcessor preprocessing', () => {
  it('keeps the centre 224x224 of an image whose shortest side is 224, normalised with CLIP’s mean and std', async () => {
    const image = randomImage(224, 301, 3);
    const input = await clipImageInput(image, 224);
    const top = Math.floor((301 - 224) / 2);
    const cropped: RgbImage = { width: 224, height: 224, pixels: image.pixels.slice(top * 224 * 3, (top + 224) * 224 * 3) };
    expect(input).toEqual(normalizedPlanar(cropped));
  });

  it('resizes the shortest side to 224 and crops the middle of the longer one', async () => {
    // Left third black, right two thirds white, 672x448: resized to 336x224, the crop is columns 56..279 (black up to 112).
    const width = 672;
    const height = 448;
    const pixels = new Uint8Array(width * height * 3);
    for (let y = 0; y < height; y++) for (let x = width / 3; x < width; x++) pixels.fill(255, (y * width + x) * 3, (y * width + x) * 3 + 3);
    const input = await clipImageInput({ width, height, pixels }, 224);
    const red = (x: number) => input[100 * 224 + x] * STD[0] + MEAN[0];
    expect(red(0)).toBeCloseTo(0, 5);
    expect(red(50)).toBeCloseTo(0, 5);
    expect(red(62)).toBeCloseTo(1, 5);
    expect(red(223)).toBeCloseTo(1, 5);
  });
});

describe('importing the PyTorch safety checker (model:import --safety-checker)', () => {
  /** The folder CompVis/stable-diffusion-safety-checker has: its CLIPConfig and the state dict as safetensors (plus a buffer the graph does not read). */
  async function pytorchFolder(dir: string, weights: Map<string, Float32Array>): Promise<void> {
    await mkdir(dir, { recursive: true });
    const config = { ...TINY_SAFETY_CHECKER, _class_name: 'StableDiffusionSafetyChecker', model_type: 'clip', text_config: {} };
    await writeFile(join(dir, 'config.json'), JSON.stringify(config));
    const tensors: Record<string, TensorSpec> = Object.fromEntries(
      [...safetyCheckerParameters(TINY_SAFETY_CHECKER)].map(([name, spec]) => [name, { dtype: 'F32' as const, shape: spec.shape, values: weights.get(name)! }]),
    );
    const positions = 50;
    tensors['vision_model.vision_model.embeddings.position_ids'] = { dtype: 'F32', shape: [1, positions], values: Array.from({ length: positions }, (_, i) => i) };
    await writeFile(join(dir, 'model.safetensors'), safetensorsBytes(tensors));
  }

  it('gives the verdicts and scores of the checker built from the same weights', async () => {
    const weights = tinyCheckerWeights(21);
    await pytorchFolder(join(root, 'pytorch'), weights);
    await importSafetyChecker(join(root, 'pytorch'), join(root, 'imported'));
    await writeTinySafetyChecker(join(root, 'built'), weights);
    const [imported, built] = await Promise.all([SafetyChecker.load(join(root, 'imported'), LOAD), SafetyChecker.load(join(root, 'built'), LOAD)]);
    try {
      for (const seed of [1, 2]) {
        const image = randomImage(256, 320, seed);
        expect(await imported.check(image)).toEqual(await built.check(image));
      }
    } finally {
      await Promise.all([imported.release(), built.release()]);
    }
  });

  it('refuses pickled weights alone, and a folder whose weights do not fit its config', async () => {
    const pickled = join(root, 'pickled');
    await mkdir(pickled, { recursive: true });
    await writeFile(join(pickled, 'config.json'), JSON.stringify(TINY_SAFETY_CHECKER));
    await writeFile(join(pickled, 'pytorch_model.bin'), 'not read');
    await expect(importSafetyChecker(pickled, join(root, 'out-pickled'))).rejects.toThrow(/pytorch_model\.bin is a PyTorch pickle file/);

    const mismatched = join(root, 'mismatched');
    await pytorchFolder(mismatched, tinyCheckerWeights());
    await writeFile(join(mismatched, 'config.json'), JSON.stringify({ ...TINY_SAFETY_CHECKER, projection_dim: 8 }));
    await expect(importSafetyChecker(mismatched, join(root, 'out-mismatched'))).rejects.toThrow(/visual_projection\.weight is \[16, 32\] in the weights but the config makes it \[8, 32\]/);
  });
});

describe('a diffusers / Optimum ONNX export (forward_onnx: clip_input and images in, has_nsfw_concepts out)', () => {
  const { onnx } = onnxProto;

  /** The built checker with forward_onnx's tail appended: scores without rounding, any special hit adds 0.01, the images passed through. */
  async function asExport(dir: string): Promise<void> {
    const path = join(dir, 'model.onnx');
    const model = onnx.ModelProto.decode(await readFile(path));
    const graph = model.graph!;
    const FLOAT = onnx.TensorProto.DataType.FLOAT;
    const node = (opType: string, input: string[], output: string, attribute: object[] = []) => graph.node!.push({ opType, input, output: [output], attribute, name: output });
    graph.initializer!.push({ name: 'zero', dataType: FLOAT, dims: [], floatData: [0] }, { name: 'hundredth', dataType: FLOAT, dims: [], floatData: [0.01] });
    const axis = [{ name: 'axes', type: onnx.AttributeProto.AttributeType.INTS, ints: [1] }];
    node('Sub', ['special_cos_dist', 'special_care_embeds_weights'], 'special_scores');
    node('Greater', ['special_scores', 'zero'], 'special_hits');
    node('Cast', ['special_hits'], 'special_hits_float', [{ name: 'to', type: onnx.AttributeProto.AttributeType.INT, i: FLOAT }]);
    node('ReduceMax', ['special_hits_float'], 'special_care', axis);
    node('Mul', ['special_care', 'hundredth'], 'special_adjustment');
    node('Sub', ['cos_dist', 'concept_embeds_weights'], 'concept_raw');
    node('Add', ['concept_raw', 'special_adjustment'], 'concept_scores');
    node('Greater', ['concept_scores', 'zero'], 'concept_hits');
    node('Cast', ['concept_hits'], 'concept_hits_float', [{ name: 'to', type: onnx.AttributeProto.AttributeType.INT, i: FLOAT }]);
    node('ReduceMax', ['concept_hits_float'], 'any_hit', [...axis, { name: 'keepdims', type: onnx.AttributeProto.AttributeType.INT, i: 0 }]);
    node('Cast', ['any_hit'], 'has_nsfw_concepts', [{ name: 'to', type: onnx.AttributeProto.AttributeType.INT, i: onnx.TensorProto.DataType.BOOL }]);
    node('Identity', ['images'], 'out_images');
    const tensor = (name: string, elemType: number, dims: (number | string)[]) => ({
      name,
      type: { tensorType: { elemType, shape: { dim: dims.map((dim) => (typeof dim === 'number' ? { dimValue: dim } : { dimParam: dim })) } } },
    });
    graph.input!.push(tensor('images', FLOAT, ['batch', 'height', 'width', 3]));
    graph.output = [tensor('out_images', FLOAT, ['batch', 'height', 'width', 3]), tensor('has_nsfw_concepts', onnx.TensorProto.DataType.BOOL, ['batch'])];
    await writeFile(path, onnx.ModelProto.encode(model).finish());
  }

  it('takes the export’s verdict', async () => {
    for (const flags of ['every image', 'no image'] as const) {
      const dir = join(root, `export-${flags.replace(' ', '-')}`);
      await writeDecidedSafetyChecker(dir, flags);
      await asExport(dir);
      const checker = await SafetyChecker.load(dir, LOAD);
      try {
        expect(await checker.check(randomImage(96, 128, 5))).toEqual({ nsfw: flags === 'every image' });
      } finally {
        await checker.release();
      }
    }
  });
});
