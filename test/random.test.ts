import { describe, expect, it } from 'vitest';
import { fmaFloat32 } from '../src/random/avx2-box-muller.ts';
import { parseSeed, randomSeed, TorchGenerator } from '../src/random/torch-generator.ts';
import { fixturesPresent, maxAbsDiff, readF32, readF64, readFixtureJson } from './fixtures.ts';

interface RngEntry {
  op: 'randn' | 'rand';
  seed: string;
  shape: number[];
  dtype: 'float32' | 'float64';
  sequence?: string;
  kernel?: string;
  array: { file: string; dtype: 'float32' | 'float64' };
}

const FLOAT32_NORMAL_TOLERANCE = 4e-6;
/** JS Math.log/cos/sin may differ from glibc's by an ulp on the double-precision vector path. */
const FLOAT64_NORMAL_TOLERANCE = 4e-15;

const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
const readArray = (entry: RngEntry) => (entry.array.dtype === 'float32' ? readF32 : readF64)(entry.array.file);

function draw(generator: TorchGenerator, entry: RngEntry): Float32Array | Float64Array {
  const count = numel(entry.shape);
  if (entry.op === 'rand') return entry.dtype === 'float32' ? generator.rand(count) : generator.randFloat64(count);
  return entry.dtype === 'float32' ? generator.randn(count) : generator.randnFloat64(count);
}

/** The tolerance the fixtures README gives for this kind of draw. */
function toleranceFor(entry: RngEntry): number {
  if (entry.op === 'rand' || numel(entry.shape) < 16) return 0;
  return entry.dtype === 'float32' ? FLOAT32_NORMAL_TOLERANCE : FLOAT64_NORMAL_TOLERANCE;
}

const entries: RngEntry[] = fixturesPresent ? readFixtureJson<{ entries: RngEntry[] }>('rng', 'index.json').entries : [];
const label = (e: RngEntry) =>
  `${e.op} ${e.dtype} seed ${e.seed} [${e.shape.join(',')}]${e.kernel ? ' (portable kernel)' : ''}`;

describe.runIf(fixturesPresent)('TorchGenerator against torch 1.13 CPU generator fixtures', () => {
  it.each(entries.filter((e) => !e.sequence).map((e) => [label(e), e] as const))('%s', (_name, entry) => {
    const expected = readArray(entry);
    const actual = draw(new TorchGenerator(entry.seed), entry);
    expect(actual.length).toBe(expected.length);
    expect(maxAbsDiff(actual, expected)).toBeLessThanOrEqual(toleranceFor(entry));
  });

  it('reproduces the AVX2 kernel arrays bit for bit (float32 normals, 16 or more elements)', () => {
    const avx2 = entries.filter((e) => e.op === 'randn' && e.dtype === 'float32' && !e.kernel && !e.sequence && numel(e.shape) >= 16);
    expect(avx2.length).toBeGreaterThan(10);
    for (const entry of avx2) {
      const expected = readArray(entry);
      const actual = new TorchGenerator(entry.seed);
      expect(maxAbsDiff(actual.randn(numel(entry.shape)), expected), label(entry)).toBe(0);
    }
  });

  it('continues one stream across calls, with the scalar path cache surviving between calls', () => {
    const sequences = new Map<string, RngEntry[]>();
    for (const entry of entries.filter((e) => e.sequence)) {
      const key = `${entry.seed} ${entry.sequence!.replace(/^call \d+ of /, '')}`;
      sequences.set(key, [...(sequences.get(key) ?? []), entry]);
    }
    expect(sequences.size).toBe(4);
    for (const [key, calls] of sequences) {
      calls.sort((a, b) => a.array.file.localeCompare(b.array.file));
      const generator = new TorchGenerator(calls[0].seed);
      for (const entry of calls) {
        const error = maxAbsDiff(draw(generator, entry), readArray(entry));
        expect(error, `${key}: ${entry.array.file}`).toBeLessThanOrEqual(toleranceFor(entry));
      }
    }
  });

  it('manualSeed restarts the stream and drops the cached normal', () => {
    const generator = new TorchGenerator(7);
    generator.randn(3); // leaves a cached normal behind
    generator.manualSeed(0);
    expect(Array.from(generator.randn(3))).toEqual(Array.from(readF32('rng/randn_seed0_3.f32')));
  });

  it('uses only the low 32 bits of 64-bit seeds, and wraps negative seeds like torch', () => {
    const expected = readF32('rng/randn_seed42_1x4x8x8.f32');
    const above2To53 = '18446744069414584362'; // 2^64 - 2^32 + 42
    for (const seed of [above2To53, BigInt(above2To53), (1n << 32n) + 42n, -(1n << 32n) + 42n]) {
      expect(maxAbsDiff(new TorchGenerator(seed).randn(256), expected), String(seed)).toBe(0);
    }
  });

  it('reports the error of every vector-path normal fixture', () => {
    const vectorPath = entries.filter((e) => e.op === 'randn' && !e.sequence && numel(e.shape) >= 16);
    const lines = vectorPath.map((entry) => {
      const error = maxAbsDiff(draw(new TorchGenerator(entry.seed), entry), readArray(entry));
      expect(error, label(entry)).toBeLessThanOrEqual(toleranceFor(entry));
      return `${label(entry)}: ${error}`;
    });
    expect(lines.length).toBeGreaterThan(0);
    console.info(`max abs error, normals with >= 16 elements:\n  ${lines.join('\n  ')}`);
  });
});

describe('TorchGenerator without fixtures', () => {
  it('runs the reference MT19937 stream (init_genrand(5489) first output 3499211612)', () => {
    expect(new TorchGenerator(5489).rand(1)[0]).toBe((3499211612 & 0xffffff) / 2 ** 24);
  });

  it('returns empty arrays for count 0 and rejects bad counts', () => {
    const generator = new TorchGenerator(0);
    expect(generator.randn(0).length).toBe(0);
    expect(() => generator.randn(-1)).toThrow(/count must be a non-negative integer/);
    expect(() => generator.rand(2.5)).toThrow(/count must be a non-negative integer/);
    expect(() => generator.randnFloat64(Number.NaN)).toThrow(/count must be a non-negative integer/);
  });

  it('rejects seeds that are not integers in range', () => {
    expect(() => new TorchGenerator(1.5)).toThrow(/seed must be an integer, got 1.5/);
    expect(() => new TorchGenerator(Number.NaN)).toThrow(/seed must be an integer/);
    expect(() => new TorchGenerator('12abc')).toThrow(/seed must be a decimal integer, got "12abc"/);
    expect(() => new TorchGenerator('1e5')).toThrow(/decimal integer/);
    expect(() => new TorchGenerator('')).toThrow(/decimal integer/);
    expect(() => new TorchGenerator(2 ** 60)).toThrow(/beyond 2\^53.*bigint or decimal string/);
    expect(() => new TorchGenerator(1n << 64n)).toThrow(/-2\^63\.\.2\^64-1/);
    expect(() => new TorchGenerator(-(1n << 63n) - 1n)).toThrow(/-2\^63\.\.2\^64-1/);
    expect(() => new TorchGenerator(null as unknown as number)).toThrow(/bigint, number or decimal string/);
  });

  it('parseSeed accepts 0..2^64-1 and names what is wrong otherwise', () => {
    expect(parseSeed('18446744073709551615')).toBe((1n << 64n) - 1n);
    expect(parseSeed(' 42 ')).toBe(42n);
    expect(parseSeed(7)).toBe(7n);
    expect(parseSeed(0n)).toBe(0n);
    expect(() => parseSeed('18446744073709551616')).toThrow(/between 0 and 2\^64-1/);
    expect(() => parseSeed(-1)).toThrow(/between 0 and 2\^64-1, got -1/);
    expect(() => parseSeed('0x10')).toThrow(/decimal integer/);
    expect(() => parseSeed(3.25)).toThrow(/must be an integer/);
  });

  it('randomSeed gives varying 32-bit bigints', () => {
    const seeds = Array.from({ length: 8 }, randomSeed);
    for (const seed of seeds) {
      expect(typeof seed).toBe('bigint');
      expect(seed >= 0n && seed < 1n << 32n).toBe(true);
    }
    expect(new Set(seeds).size).toBeGreaterThan(1);
  });
});

describe('fmaFloat32', () => {
  // (1 + 2^-12)^2 = 1 + 2^-11 + 2^-24 lies exactly halfway between two floats; a tiny addend decides
  // the rounding, which a plain double sum followed by Math.fround would lose.
  const a = 1 + 2 ** -12;
  const lower = 1 + 2 ** -11;
  const upper = 1 + 2 ** -11 + 2 ** -23;

  it('rounds once, like a hardware fused multiply-add', () => {
    expect(Math.fround(a * a + 2 ** -70)).toBe(lower); // the double-rounding trap
    expect(fmaFloat32(a, a, 2 ** -70)).toBe(upper);
    expect(fmaFloat32(a, a, -(2 ** -70))).toBe(lower);
    expect(fmaFloat32(-a, a, -(2 ** -70))).toBe(-upper);
    expect(fmaFloat32(a, a, 0)).toBe(lower); // an exact tie still goes to even
    expect(fmaFloat32(3, 5, 0.5)).toBe(15.5);
  });
});
