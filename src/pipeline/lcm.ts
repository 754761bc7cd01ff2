/**
 * Latent Consistency Models were distilled with the guidance scale as an input: their U-Net takes
 * `timestep_cond`, an embedding of the guidance, and runs without the classifier-free-guidance batch (diffusers'
 * LatentConsistencyModelPipeline).
 */

/**
 * diffusers' `get_guidance_scale_embedding(w, dim)` for one w, in float32 as torch computes it: `[sin(a), cos(a)]`
 * with `a = w·1000·exp(−k·ln(10000)/(dim/2 − 1))`, zero-padded to an odd `dim`.
 */
function guidanceScaleEmbedding(w: number, dim: number): Float32Array {
  const f = Math.fround;
  const half = Math.floor(dim / 2);
  const scaled = f(f(w) * 1000);
  const step = f(f(Math.log(10000)) / (half - 1));
  const embedding = new Float32Array(dim);
  for (let k = 0; k < half; k++) {
    const angle = f(scaled * f(Math.exp(f(k * -step))));
    embedding[k] = Math.sin(angle);
    embedding[half + k] = Math.cos(angle);
  }
  return embedding;
}

/**
 * The `timestep_cond` of an LCM U-Net for a guidance scale. diffusers follows Imagen's guidance formula
 * (`uncond + g·(text − uncond)`) where the LCM paper's is `text + w·(text − uncond)`, so the model gets w = g − 1.
 */
export function lcmGuidanceCondition(guidanceScale: number, dim: number): Float32Array {
  return guidanceScaleEmbedding(guidanceScale - 1, dim);
}
