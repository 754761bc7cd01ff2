import type { PredictionType, SchedulerConfig } from './config.ts';
import type { NoiseSource, StepOptions } from './scheduler.ts';

/** `torch.quantile(values, q)` with linear interpolation, on float32 values. */
function quantile(values: Float32Array, q: number): number {
  const sorted = Float32Array.from(values).sort();
  const rank = Math.fround(q * (sorted.length - 1));
  const below = Math.floor(rank);
  const above = Math.min(below + 1, sorted.length - 1);
  const weight = Math.fround(rank - below);
  const start = sorted[below];
  const end = sorted[above];
  // torch.lerp switches form at weight 0.5 to stay exact at both ends.
  return weight < 0.5 ? Math.fround(start + Math.fround(weight * (end - start))) : Math.fround(end - Math.fround((end - start) * (1 - weight)));
}

/**
 * Dynamic thresholding (Imagen, Saharia et al. 2022): clip the predicted x0 to the `ratio` quantile of its
 * absolute values (at least 1, at most `maxValue`) and divide by that bound.
 */
export function thresholdSample(sample: Float32Array, ratio: number, maxValue: number): Float32Array {
  const bound = Math.min(Math.max(quantile(sample.map(Math.abs), ratio), 1), maxValue);
  return sample.map((v) => Math.min(Math.max(v, -bound), bound) / bound);
}

/** `thresholdSample` with the config's `dynamic_thresholding_ratio` and `sample_max_value`. */
export function dynamicThreshold(config: SchedulerConfig, predictedOriginal: Float32Array): Float32Array {
  return thresholdSample(predictedOriginal, config.number('dynamic_thresholding_ratio'), config.number('sample_max_value'));
}

export function clampSample(sample: Float32Array, range: number): Float32Array {
  return sample.map((v) => Math.min(Math.max(v, -range), range));
}

/** Applies `thresholding` or else `clip_sample` to a predicted x0, as DDIM and LCM do. */
export function clipOrThreshold(config: SchedulerConfig, predictedOriginal: Float32Array): Float32Array {
  if (config.boolean('thresholding')) return dynamicThreshold(config, predictedOriginal);
  if (config.boolean('clip_sample')) return clampSample(predictedOriginal, config.number('clip_sample_range'));
  return predictedOriginal;
}

/** The generator a stochastic step draws from; diffusers would fall back to torch's global RNG, which has no seed here. */
export function requireGenerator(options: StepOptions | undefined, who: string): NoiseSource {
  if (!options?.generator) throw new Error(`${who}.step draws noise and needs options.generator (the pipeline's seeded generator)`);
  return options.generator;
}

/** One noise tensor shaped like `sample`. */
export function drawNoise(generator: NoiseSource, sample: Float32Array): Float32Array {
  const noise = generator.randn(sample.length);
  if (noise.length !== sample.length) throw new Error(`generator returned ${noise.length} values, expected ${sample.length}`);
  return noise;
}

/**
 * The forward process at ᾱ, sqrt(ᾱ)·x0 + sqrt(1 − ᾱ)·noise, in float32 like diffusers' DDPM-style `add_noise`
 * (DDIM, PNDM, LCM).
 */
export function noiseToAlpha(original: Float32Array, noise: Float32Array, alphaProd: number): Float32Array {
  assertSameLength(noise, original);
  const f = Math.fround;
  const signal = f(Math.sqrt(alphaProd));
  const noiseScale = f(Math.sqrt(f(1 - alphaProd)));
  return original.map((x, i) => f(signal * x) + f(noiseScale * noise[i]));
}

export function assertSameLength(modelOutput: Float32Array, sample: Float32Array): void {
  if (modelOutput.length !== sample.length) {
    throw new Error(`model output has ${modelOutput.length} values but the sample has ${sample.length}`);
  }
}

/** The clean-sample estimate x0 and the noise estimate from a model output at cumulative alpha ᾱ_t (DDPM-style). */
export function predictFromAlpha(
  type: PredictionType,
  modelOutput: Float32Array,
  sample: Float32Array,
  alphaProd: number,
): { predOriginal: Float32Array; predEpsilon: Float32Array } {
  const f = Math.fround;
  const sqrtAlpha = f(Math.sqrt(alphaProd));
  const sqrtBeta = f(Math.sqrt(f(1 - alphaProd)));
  switch (type) {
    case 'epsilon':
      return {
        predOriginal: sample.map((x, i) => (x - sqrtBeta * modelOutput[i]) / sqrtAlpha),
        predEpsilon: Float32Array.from(modelOutput),
      };
    case 'sample':
      return {
        predOriginal: Float32Array.from(modelOutput),
        predEpsilon: sample.map((x, i) => (x - sqrtAlpha * modelOutput[i]) / sqrtBeta),
      };
    case 'v_prediction':
      return {
        predOriginal: sample.map((x, i) => sqrtAlpha * x - sqrtBeta * modelOutput[i]),
        predEpsilon: sample.map((x, i) => sqrtAlpha * modelOutput[i] + sqrtBeta * x),
      };
  }
}
