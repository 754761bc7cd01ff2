/**
 * Float32 emulation of PyTorch's AVX2 Box–Muller kernel (`normal_fill_16_AVX2`), which draws every
 * float32 `torch.randn` of 16 or more elements on x86 CPUs.
 *
 * That kernel uses the Cephes-style vector `log256_ps` and `sincos256_ps` (avx_mathfun), compiled
 * with FMA contraction. Every step below is rounded to float32 in the same order, and each
 * multiply-add that the compiler fused is a single correctly rounded fused multiply-add, so the
 * results are bit-identical to torch's arrays (checked against the rng fixtures).
 */

const f32 = Math.fround;

/** `a * b + c` rounded once to float32, as a hardware FMA on float32 operands does. */
export function fmaFloat32(a: number, b: number, c: number): number {
  const product = a * b; // exact: two 24-bit significands fit in a double's 53
  const sum = product + c;
  const rounded = f32(sum);
  if (rounded === sum) return rounded;
  const neighbour = 2 * sum - rounded;
  if (f32(neighbour) !== neighbour) return rounded;
  // The double sum sits exactly halfway between two floats, so fround's tie-break would decide;
  // the bits the double addition dropped decide instead (double rounding would be wrong here).
  const cPart = sum - product;
  const dropped = product - (sum - cPart) + (c - cPart);
  if (dropped === 0) return rounded;
  return dropped > 0 === neighbour > rounded ? neighbour : rounded;
}

const TWO_PI = f32(2 * Math.PI);

const SQRT_HALF = f32(0.707106781186547524);
const LOG_P = [
  7.0376836292e-2, -1.151461031e-1, 1.167699874e-1, -1.2420140846e-1, 1.4249322787e-1, -1.6668057665e-1,
  2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1,
].map(f32);
const LOG_Q1 = f32(-2.12194440e-4);
const LOG_Q2 = f32(0.693359375);

const FOUR_OVER_PI = f32(1.27323954473516);
const PI_OVER_4_PART1 = f32(-0.78515625);
const PI_OVER_4_PART2 = f32(-2.4187564849853515625e-4);
const PI_OVER_4_PART3 = f32(-3.77489497744594108e-8);
const COS_P = [2.443315711809948e-5, -1.388731625493765e-3, 4.166664568298827e-2].map(f32);
const SIN_P = [-1.9515295891e-4, 8.3321608736e-3, -1.6666654611e-1].map(f32);

const bitsView = new Float32Array(1);
const bitsInt = new Uint32Array(bitsView.buffer);

/** Natural log of a float32 in [2^-24, 1] (the kernel's `1 - u` range: positive and normal). */
function logFloat32(value: number): number {
  bitsView[0] = value;
  const bits = bitsInt[0];
  let exponent = (bits >>> 23) - 126;
  bitsInt[0] = (bits & 0x807fffff) | 0x3f000000; // mantissa scaled into [0.5, 1)
  let x = bitsView[0];
  if (x < SQRT_HALF) {
    exponent -= 1;
    x = f32(f32(x - 1) + x);
  } else {
    x = f32(x - 1);
  }
  const z = f32(x * x);
  let y = LOG_P[0];
  for (let k = 1; k < LOG_P.length; k++) y = fmaFloat32(y, x, LOG_P[k]);
  y = fmaFloat32(f32(y * x), z, f32(exponent * LOG_Q1));
  y = f32(y - f32(z * 0.5));
  x = f32(x + y);
  return fmaFloat32(exponent, LOG_Q2, x);
}

let sinResult = 0;
let cosResult = 0;

/** Sets sinResult and cosResult for a float32 angle in [0, 2π]. */
function sinCosFloat32(angle: number): void {
  let octant = Math.trunc(f32(angle * FOUR_OVER_PI));
  octant = (octant + 1) & ~1;
  let x = fmaFloat32(octant, PI_OVER_4_PART1, angle);
  x = fmaFloat32(octant, PI_OVER_4_PART2, x);
  x = fmaFloat32(octant, PI_OVER_4_PART3, x);
  const z = f32(x * x);

  let cosPoly = fmaFloat32(fmaFloat32(COS_P[0], z, COS_P[1]), z, COS_P[2]);
  cosPoly = fmaFloat32(f32(cosPoly * z), z, -f32(z * 0.5));
  cosPoly = f32(cosPoly + 1);
  let sinPoly = fmaFloat32(fmaFloat32(SIN_P[0], z, SIN_P[1]), z, SIN_P[2]);
  sinPoly = fmaFloat32(f32(sinPoly * z), x, x);

  const polynomialsSwapped = (octant & 2) !== 0;
  const sin = polynomialsSwapped ? cosPoly : sinPoly;
  const cos = polynomialsSwapped ? sinPoly : cosPoly;
  sinResult = (octant & 4) !== 0 ? -sin : sin;
  cosResult = ((octant - 2) & 4) === 0 ? -cos : cos;
}

/**
 * Turns the 16 uniforms `data[offset..offset+15]` (float32 in [0, 1)) into 16 normals in place:
 * pair j takes `u1 = 1 - data[offset+j]` and `u2 = data[offset+j+8]`.
 */
export function boxMuller16Float32(data: Float32Array, offset: number): void {
  for (let j = offset; j < offset + 8; j++) {
    const radius = f32(Math.sqrt(f32(-2 * logFloat32(f32(1 - data[j])))));
    sinCosFloat32(f32(TWO_PI * data[j + 8]));
    data[j] = radius * cosResult;
    data[j + 8] = radius * sinResult;
  }
}
