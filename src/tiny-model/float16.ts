const scratchFloat = new Float32Array(1);
const scratchBits = new Uint32Array(scratchFloat.buffer);

/** IEEE 754 binary16 bits of a number, rounded to nearest, ties to even (what numpy's astype(float16) does). */
export function float32ToFloat16Bits(value: number): number {
  scratchFloat[0] = value;
  const bits = scratchBits[0];
  const sign = (bits >>> 16) & 0x8000;
  const exponent32 = (bits >>> 23) & 0xff;
  const mantissa32 = bits & 0x7fffff;

  if (exponent32 === 0xff) return sign | 0x7c00 | (mantissa32 === 0 ? 0 : 0x200);

  const exponent16 = exponent32 - 127 + 15;
  if (exponent16 >= 0x1f) return sign | 0x7c00;

  if (exponent16 <= 0) {
    // Subnormal half: count in units of 2^-24 from the full 24-bit significand.
    const shift = 14 - exponent16;
    if (shift > 24) return sign;
    const significand = mantissa32 | 0x800000;
    return sign | roundShifted(significand, shift);
  }

  // A carry out of the mantissa correctly bumps the exponent (up to infinity).
  return sign | ((exponent16 << 10) + roundShifted(mantissa32, 13));
}

function roundShifted(value: number, shift: number): number {
  const kept = value >>> shift;
  const remainder = value & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  return remainder > half || (remainder === half && (kept & 1) === 1) ? kept + 1 : kept;
}

export function float32ArrayToFloat16Bits(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = float32ToFloat16Bits(values[i]);
  return out;
}
