import { describe, expect, it } from 'vitest';
import { float16ToFloat32, float32ToFloat16, fromHalfBits, toHalfBits } from '../src/pipeline/float16.ts';

// Expected bit patterns are IEEE 754 binary16 encodings (as numpy.float16(x).view(uint16) gives).
describe('float16 conversion', () => {
  it.each([
    [1, 0x3c00],
    [-2, 0xc000],
    [0.1, 0x2e66],
    [65504, 0x7bff],
    [70000, 0x7c00],
    [2 ** -24, 0x0001],
    [2 ** -14, 0x0400],
    [1e-8, 0x0000],
    [1 + 2 ** -11, 0x3c00],
    [1 + 3 * 2 ** -11, 0x3c02],
    [999, 0x63ce],
    [65520, 0x7c00],
    [3 * 2 ** -26, 0x0001],
    [2 ** -25, 0x0000],
    [2047.25 / 1024, 0x3fff],
    [2047.5 / 1024, 0x4000],
    [-Infinity, 0xfc00],
    [Number.NaN, 0x7e00],
    [Infinity, 0x7c00],
    [-0, 0x8000],
  ])('%d → 0x%s', (value, bits) => {
    expect(toHalfBits(value)).toBe(bits);
  });

  it('decodes bit patterns, subnormals and NaN included', () => {
    expect(fromHalfBits(0x3c00)).toBe(1);
    expect(fromHalfBits(0x0001)).toBe(2 ** -24);
    expect(fromHalfBits(0xfc00)).toBe(-Infinity);
    expect(fromHalfBits(0x7e00)).toBeNaN();
  });

  it('round-trips every finite half value through float32 arrays', () => {
    const all = new Uint16Array(0x7c00).map((_, i) => i);
    expect(float32ToFloat16(float16ToFloat32(all))).toEqual(all);
  });
});
