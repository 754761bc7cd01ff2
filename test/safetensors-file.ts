import { float32ToFloat16 } from '../src/pipeline/float16.ts';

export interface TensorSpec {
  dtype: 'F32' | 'F16';
  shape: number[];
  values: ArrayLike<number>;
}

/** A .safetensors file's bytes: 8-byte header length, JSON header, data (the format as safetensors writes it). */
export function safetensorsBytes(tensors: Record<string, TensorSpec>, metadata: Record<string, string> = {}): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: metadata };
  const parts: Uint8Array[] = [];
  let offset = 0;
  for (const [name, { dtype, shape, values }] of Object.entries(tensors)) {
    const bytes = dtype === 'F32' ? new Uint8Array(Float32Array.from(values).buffer) : new Uint8Array(float32ToFloat16(values).buffer);
    header[name] = { dtype, shape, data_offsets: [offset, offset + bytes.byteLength] };
    parts.push(bytes);
    offset += bytes.byteLength;
  }
  const headerBytes = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + headerBytes.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.byteLength), true);
  out.set(headerBytes, 8);
  let position = 8 + headerBytes.byteLength;
  for (const part of parts) {
    out.set(part, position);
    position += part.byteLength;
  }
  return out;
}
