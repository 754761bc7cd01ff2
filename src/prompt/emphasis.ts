/**
 * AUTOMATIC1111's default emphasis ("Original", `EmphasisOriginal.after_transformers`) on one chunk's text-encoder
 * output `z` ([77, width], float32): every token's vector is multiplied by its weight, then the whole chunk is
 * rescaled so that its mean over all values is what it was before. Rounded to float32 at each step as torch
 * computes it. A chunk whose weights are all 1 is returned as it is (torch's result for it is the same).
 */
export function applyEmphasis(z: Float32Array, multipliers: readonly number[]): Float32Array {
  if (multipliers.every((multiplier) => multiplier === 1)) return z;
  const width = z.length / multipliers.length;
  if (!Number.isInteger(width)) throw new Error(`applyEmphasis: ${z.length} values do not split into ${multipliers.length} tokens`);
  const originalMean = mean(z);
  const weighted = new Float32Array(z.length);
  multipliers.forEach((multiplier, token) => {
    const m = Math.fround(multiplier);
    for (let channel = token * width; channel < (token + 1) * width; channel++) weighted[channel] = z[channel] * m;
  });
  const ratio = Math.fround(originalMean / mean(weighted));
  for (let index = 0; index < weighted.length; index++) weighted[index] *= ratio;
  return weighted;
}

function mean(values: Float32Array): number {
  let sum = 0;
  for (const value of values) sum += value;
  return Math.fround(sum / values.length);
}

/**
 * A1111's "pad prompt/negative prompt" (`pad_cond_uncond`): the side with fewer chunks gets copies of the empty
 * prompt's chunk appended, so both conditionings have the same length for one batched U-Net call. Each
 * conditioning is `[77·k, width]` flattened; `emptyChunk` is `[77, width]`.
 */
export function padToSameLength(
  prompt: Float32Array,
  negative: Float32Array,
  emptyChunk: Float32Array,
): { prompt: Float32Array; negative: Float32Array } {
  const length = Math.max(prompt.length, negative.length);
  return { prompt: padWith(prompt, emptyChunk, length), negative: padWith(negative, emptyChunk, length) };
}

function padWith(conditioning: Float32Array, emptyChunk: Float32Array, length: number): Float32Array {
  if (conditioning.length === length) return conditioning;
  if ((length - conditioning.length) % emptyChunk.length !== 0) throw new Error('padToSameLength: the conditionings are not whole chunks');
  const padded = new Float32Array(length);
  padded.set(conditioning);
  for (let offset = conditioning.length; offset < length; offset += emptyChunk.length) padded.set(emptyChunk, offset);
  return padded;
}
