/** mulberry32: a tiny 32-bit PRNG, enough for reproducible weights (not for anything statistical). */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A per-component seed, so adding weights to one model leaves the others' weights unchanged. */
export function componentSeed(seed: number, component: string): number {
  let hash = seed >>> 0;
  for (const char of component) {
    hash = Math.imul(hash ^ char.charCodeAt(0), 0x01000193) >>> 0;
  }
  return hash;
}
