import { float16ToFloat32 } from '../pipeline/float16.ts';

/** One tensor of a .safetensors file, its values widened to float32. */
export interface FloatTensor {
  dtype: 'F32' | 'F16' | 'BF16';
  shape: number[];
  data: Float32Array;
}

const HEADER_LENGTH_BYTES = 8;
const BYTES_PER_VALUE = { F32: 4, F16: 2, BF16: 2 } as const;

/**
 * Reads a whole (small) .safetensors file held in memory: an 8-byte little-endian header length, a JSON header
 * naming each tensor's dtype, shape and byte range, then the data. Float tensors only; throws with the reason
 * on anything else or on a damaged file.
 */
export function parseSafetensors(bytes: Uint8Array): Map<string, FloatTensor> {
  if (bytes.byteLength < HEADER_LENGTH_BYTES) throw new Error('not a safetensors file (too short)');
  const headerLength = Number(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(0, true));
  const dataStart = HEADER_LENGTH_BYTES + headerLength;
  if (dataStart > bytes.byteLength) throw new Error('not a safetensors file (its header runs past the end)');
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(HEADER_LENGTH_BYTES, dataStart)));
  } catch {
    throw new Error('not a safetensors file (its header is not JSON)');
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) throw new Error('not a safetensors file (its header is not an object)');

  const tensors = new Map<string, FloatTensor>();
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') continue;
    const { dtype, shape, data_offsets: offsets } = (entry ?? {}) as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (dtype !== 'F32' && dtype !== 'F16' && dtype !== 'BF16') throw new Error(`tensor "${name}" has dtype ${String(dtype)}; expected F32, F16 or BF16`);
    if (!Array.isArray(shape) || !shape.every((dim) => Number.isSafeInteger(dim) && dim >= 0)) throw new Error(`tensor "${name}" has no valid shape`);
    const count = shape.reduce((product: number, dim: number) => product * dim, 1);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((offset) => Number.isSafeInteger(offset) && offset >= 0)) {
      throw new Error(`tensor "${name}" has no valid data_offsets`);
    }
    const [begin, end] = offsets as [number, number];
    if (end - begin !== count * BYTES_PER_VALUE[dtype] || dataStart + end > bytes.byteLength) {
      throw new Error(`tensor "${name}" does not fit the file (truncated or damaged)`);
    }
    const raw = bytes.slice(dataStart + begin, dataStart + end);
    tensors.set(name, { dtype, shape, data: toFloat32(dtype, raw.buffer) });
  }
  return tensors;
}

function toFloat32(dtype: FloatTensor['dtype'], buffer: ArrayBuffer): Float32Array {
  if (dtype === 'F32') return new Float32Array(buffer);
  const halves = new Uint16Array(buffer);
  if (dtype === 'F16') return float16ToFloat32(halves);
  // bfloat16 is the top half of a float32.
  const widened = new Uint32Array(halves.length);
  for (let index = 0; index < halves.length; index++) widened[index] = halves[index] << 16;
  return new Float32Array(widened.buffer);
}
