import { webcrypto } from 'node:crypto';
import type { NoiseSource } from '../schedulers/scheduler.ts';
import { boxMuller16Float32 } from './avx2-box-muller.ts';

const UINT64_LIMIT = 1n << 64n;
const INT64_MIN = -(1n << 63n);
const TWO_POW_MINUS_24 = 2 ** -24;
const TWO_POW_MINUS_53 = 2 ** -53;
const TWO_POW_32 = 2 ** 32;
/** Below this many elements torch draws normals one by one (scalar double Box–Muller with a cached partner). */
const VECTOR_PATH_MIN = 16;

/** MT19937 (32-bit Mersenne Twister) with the standard `init_genrand` seeding, as torch's CPU generator. */
class MersenneTwister {
  private readonly state = new Uint32Array(624);
  private index = 624;

  constructor(seed32: number) {
    const state = this.state;
    state[0] = seed32;
    for (let i = 1; i < 624; i++) {
      const previous = state[i - 1] ^ (state[i - 1] >>> 30);
      state[i] = Math.imul(1812433253, previous) + i;
    }
  }

  nextUint32(): number {
    if (this.index >= 624) this.twist();
    let y = this.state[this.index++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  private twist(): void {
    const state = this.state;
    for (let k = 0; k < 624; k++) {
      const y = (state[k] & 0x80000000) | (state[(k + 1) % 624] & 0x7fffffff);
      state[k] = state[(k + 397) % 624] ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
    }
    this.index = 0;
  }
}

/**
 * Reproduces `torch.Generator("cpu").manual_seed(seed)` with `torch.randn` / `torch.rand` (PyTorch 1.13
 * on x86 with AVX2), so latents and scheduler noise equal diffusers' for the same seed.
 */
export class TorchGenerator implements NoiseSource {
  private engine!: MersenneTwister;
  /** torch keeps the second value of each scalar Box–Muller pair for the next scalar draw. */
  private cachedNormal: number | null = null;

  constructor(seed: bigint | number | string) {
    this.manualSeed(seed);
  }

  /** Restarts the stream like `generator.manual_seed(seed)`; negative seeds wrap modulo 2^64 as in torch. */
  manualSeed(seed: bigint | number | string): void {
    const value = toBigInt(seed, 'seed');
    if (value < INT64_MIN || value >= UINT64_LIMIT) {
      throw new RangeError(`seed must be an integer in -2^63..2^64-1, got ${value}`);
    }
    this.engine = new MersenneTwister(Number(BigInt.asUintN(32, value)));
    this.cachedNormal = null;
  }

  /** `torch.randn(count, generator=g, dtype=torch.float32)`; only the element count of a shape matters. */
  randn(count: number): Float32Array {
    checkCount(count);
    const out = new Float32Array(count);
    if (count < VECTOR_PATH_MIN) {
      for (let i = 0; i < count; i++) out[i] = this.scalarNormal();
      return out;
    }
    this.fillUniformFloat32(out, 0, count);
    for (let offset = 0; offset + 16 <= count; offset += 16) boxMuller16Float32(out, offset);
    if (count % 16 !== 0) {
      // torch redraws the last 16 positions (overwriting normals already made) and transforms them again.
      this.fillUniformFloat32(out, count - 16, count);
      boxMuller16Float32(out, count - 16);
    }
    return out;
  }

  /** `torch.rand(count, generator=g, dtype=torch.float32)`: uniforms in [0, 1). */
  rand(count: number): Float32Array {
    checkCount(count);
    const out = new Float32Array(count);
    this.fillUniformFloat32(out, 0, count);
    return out;
  }

  /** `torch.randn(count, generator=g, dtype=torch.float64)`. */
  randnFloat64(count: number): Float64Array {
    checkCount(count);
    const out = new Float64Array(count);
    if (count < VECTOR_PATH_MIN) {
      for (let i = 0; i < count; i++) out[i] = this.scalarNormal();
      return out;
    }
    for (let i = 0; i < count; i++) out[i] = this.uniformFloat64();
    for (let offset = 0; offset + 16 <= count; offset += 16) boxMuller16Float64(out, offset);
    if (count % 16 !== 0) {
      for (let i = count - 16; i < count; i++) out[i] = this.uniformFloat64();
      boxMuller16Float64(out, count - 16);
    }
    return out;
  }

  /** `torch.rand(count, generator=g, dtype=torch.float64)`: uniforms in [0, 1) with 53 random bits. */
  randFloat64(count: number): Float64Array {
    checkCount(count);
    const out = new Float64Array(count);
    for (let i = 0; i < count; i++) out[i] = this.uniformFloat64();
    return out;
  }

  private fillUniformFloat32(out: Float32Array, start: number, end: number): void {
    const engine = this.engine;
    for (let i = start; i < end; i++) out[i] = (engine.nextUint32() & 0xffffff) * TWO_POW_MINUS_24;
  }

  /** Two draws, the first one the high word of a 64-bit value whose low 53 bits are kept. */
  private uniformFloat64(): number {
    const high = this.engine.nextUint32() & 0x1fffff;
    const low = this.engine.nextUint32();
    return (high * TWO_POW_32 + low) * TWO_POW_MINUS_53;
  }

  /** torch's `normal_distribution<double>`: returns r·cos θ and caches r·sin θ for the next call. */
  private scalarNormal(): number {
    if (this.cachedNormal !== null) {
      const cached = this.cachedNormal;
      this.cachedNormal = null;
      return cached;
    }
    const u1 = this.uniformFloat64();
    const u2 = this.uniformFloat64();
    const radius = Math.sqrt(-2 * Math.log(1 - u2));
    const theta = 2 * Math.PI * u1;
    this.cachedNormal = radius * Math.sin(theta);
    return radius * Math.cos(theta);
  }
}

/** Box–Muller on 16 float64 uniforms in place, in double precision (torch's portable `normal_fill_16`). */
function boxMuller16Float64(data: Float64Array, offset: number): void {
  for (let j = offset; j < offset + 8; j++) {
    const radius = Math.sqrt(-2 * Math.log(1 - data[j]));
    const theta = 2 * Math.PI * data[j + 8];
    data[j] = radius * Math.cos(theta);
    data[j + 8] = radius * Math.sin(theta);
  }
}

/** Validates a user-given seed: an integer 0..2^64-1 (bigint, safe-integer number, or decimal string). */
export function parseSeed(value: bigint | number | string): bigint {
  const seed = toBigInt(value, 'seed');
  if (seed < 0n || seed >= UINT64_LIMIT) throw new RangeError(`seed must be between 0 and 2^64-1, got ${seed}`);
  return seed;
}

/** A fresh seed in 0..2^32-1 from the system's cryptographic random source, for requests without one. */
export function randomSeed(): bigint {
  return BigInt(webcrypto.getRandomValues(new Uint32Array(1))[0]);
}

function toBigInt(value: bigint | number | string, what: string): bigint {
  if (typeof value === 'bigint') return value;
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw new TypeError(`${what} must be an integer, got ${value}`);
    if (!Number.isSafeInteger(value)) {
      throw new RangeError(`${what} ${value} is beyond 2^53 and may have lost digits; pass it as a bigint or decimal string`);
    }
    return BigInt(value);
  }
  if (typeof value === 'string') {
    const text = value.trim();
    if (!/^-?\d+$/.test(text)) throw new TypeError(`${what} must be a decimal integer, got ${JSON.stringify(value)}`);
    return BigInt(text);
  }
  throw new TypeError(`${what} must be a bigint, number or decimal string, got ${typeof value}`);
}

function checkCount(count: number): void {
  if (!Number.isSafeInteger(count) || count < 0) {
    throw new RangeError(`count must be a non-negative integer, got ${count}`);
  }
}
