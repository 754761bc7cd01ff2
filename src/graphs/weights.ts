/**
 * What a parameter is, so a source without trained values can draw sensible ones: `fanIn` is the number of
 * inputs each output sums over (in × kernel area for a convolution).
 */
export type WeightInit =
  | { kind: 'weight'; fanIn: number }
  | { kind: 'bias'; fanIn: number }
  | { kind: 'embedding' }
  | { kind: 'norm-scale' }
  | { kind: 'norm-shift' };

/** The values of a model's parameters, asked for by state-dict name in torch's layout (float32, row-major). */
export interface WeightSource {
  read(name: string, shape: readonly number[], init: WeightInit): Float32Array;
}

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

/**
 * Random weights for models that only need the architecture (tests, benchmarks): uniform with variance 1/fan_in
 * (LeCun), so activations stay O(1) through the stacks; norm scales near 1, shifts near 0. `gains` scale the
 * weights whose name ends with a key, e.g. to keep a random decoder's output mostly inside [-1, 1].
 */
export class RandomWeights implements WeightSource {
  private readonly random: () => number;

  constructor(
    seed: number,
    private readonly gains: Record<string, number> = {},
  ) {
    this.random = mulberry32(seed);
  }

  read(name: string, shape: readonly number[], init: WeightInit): Float32Array {
    const [center, bound] = this.distribution(init);
    const gain = Object.entries(this.gains).find(([suffix]) => name.endsWith(suffix))?.[1] ?? 1;
    const values = new Float32Array(shape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < values.length; i++) values[i] = gain * (center + (2 * this.random() - 1) * bound);
    return values;
  }

  private distribution(init: WeightInit): [center: number, bound: number] {
    switch (init.kind) {
      case 'weight':
        return [0, Math.sqrt(3 / init.fanIn)];
      case 'bias':
        return [0, 1 / Math.sqrt(init.fanIn)];
      case 'embedding':
        return [0, Math.sqrt(3)];
      case 'norm-scale':
        return [1, 0.1];
      case 'norm-shift':
        return [0, 0.1];
    }
  }
}

/** A row-major [rows, columns] matrix's transpose. */
export function transpose2d(values: Float32Array, rows: number, columns: number): Float32Array {
  const out = new Float32Array(values.length);
  for (let row = 0; row < rows; row++) {
    for (let column = 0; column < columns; column++) out[column * rows + row] = values[row * columns + column];
  }
  return out;
}
