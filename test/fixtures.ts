import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** ../shared/fixtures beside the project root (SHARED_FIXTURES_DIR overrides). */
export const fixturesDir = process.env.SHARED_FIXTURES_DIR ?? resolve(projectRoot, '..', 'shared', 'fixtures');

const present = existsSync(join(fixturesDir, 'manifest.json'));
if (!present && process.env.CI === 'true') {
  throw new Error(`Reference fixtures are missing at ${fixturesDir}; CI needs ../shared/fixtures beside the project.`);
}

/** False on a fresh clone without ../shared: fixture tests are skipped there (never under CI=true). */
export const fixturesPresent = present;

export function fixturePath(...parts: string[]): string {
  return join(fixturesDir, ...parts);
}

export function readFixtureJson<T = any>(...parts: string[]): T {
  return JSON.parse(readFileSync(fixturePath(...parts), 'utf8'), (_key, value) =>
    value === '-Infinity' ? -Infinity : value === 'Infinity' ? Infinity : value === 'NaN' ? NaN : value,
  ) as T;
}

export function readF32(...parts: string[]): Float32Array {
  const buf = readFileSync(fixturePath(...parts));
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}

export function readF64(...parts: string[]): Float64Array {
  const buf = readFileSync(fixturePath(...parts));
  return new Float64Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}

export function readI32(...parts: string[]): Int32Array {
  const buf = readFileSync(fixturePath(...parts));
  return new Int32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

/** The largest and the mean absolute difference of two equally long arrays (for images: in 8-bit levels). */
export function pixelDifference(a: ArrayLike<number>, b: ArrayLike<number>): { max: number; mean: number } {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let max = 0;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const difference = Math.abs(a[i] - b[i]);
    max = Math.max(max, difference);
    sum += difference;
  }
  return { max, mean: sum / a.length };
}
