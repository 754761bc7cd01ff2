import { closeSync, existsSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { basename } from 'node:path';
import { float16ToFloat32 } from '../pipeline/float16.ts';

/*
 * The safetensors format: an 8-byte little-endian header length, a JSON header mapping each tensor name to
 * {dtype, shape, data_offsets: [begin, end]} (offsets relative to the end of the header) and an optional
 * "__metadata__" object of strings, then the raw little-endian data. Tensors are read one at a time at their
 * offsets, so a checkpoint of any size is never held whole.
 */

const ITEM_BYTES = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 } as const;
export type SafetensorsDtype = keyof typeof ITEM_BYTES;
const FLOAT_DTYPES: readonly SafetensorsDtype[] = ['F64', 'F32', 'F16', 'BF16'];
/** Far beyond any real header (SD checkpoints have ~1 MB); a larger one means the file is not safetensors. */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export interface TensorInfo {
  dtype: SafetensorsDtype;
  shape: number[];
  /** Byte range in the file. */
  start: number;
  end: number;
}

/** File types that hold a Python pickle, and the first bytes that give one away whatever its name. */
const PICKLE_EXTENSIONS = /\.(ckpt|pt|pth|bin|pkl|pickle)$/i;

export function pickleRefusal(path: string): Error {
  return new Error(
    `${basename(path)} is a PyTorch pickle file: loading one can run any code hidden in it, so it is not read. ` +
      'Download the .safetensors version of the model instead (model sites and the Hugging Face hub offer one for nearly every model), ' +
      'or convert the file to .safetensors on a machine where you trust it.',
  );
}

export function isPickleName(path: string): boolean {
  return PICKLE_EXTENSIONS.test(path);
}

/** One .safetensors file, open for reading tensors by name. */
export class SafetensorsFile {
  private constructor(
    readonly path: string,
    private readonly fd: number,
    readonly tensors: ReadonlyMap<string, TensorInfo>,
    readonly metadata: Readonly<Record<string, string>>,
  ) {}

  /** Opens and checks `path`; throws a one-line error naming what is wrong (a pickle, not safetensors, truncated). */
  static open(path: string): SafetensorsFile {
    if (isPickleName(path)) throw pickleRefusal(path);
    if (!existsSync(path)) throw new Error(`${path} does not exist`);
    const fd = openSync(path, 'r');
    try {
      const { tensors, metadata } = readHeader(fd, path);
      return new SafetensorsFile(path, fd, tensors, metadata);
    } catch (error) {
      closeSync(fd);
      throw error;
    }
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const info = this.tensors.get(name);
    if (!info) throw new Error(`${basename(this.path)} has no tensor ${name}`);
    return info;
  }

  /** A floating-point tensor's values as float32 (F16, BF16 and F64 converted). */
  readFloat32(name: string): Float32Array {
    const info = this.info(name);
    if (!FLOAT_DTYPES.includes(info.dtype)) throw new Error(`${basename(this.path)}: ${name} holds ${info.dtype} values, not floating point`);
    const bytes = new Uint8Array(info.end - info.start);
    for (let read = 0; read < bytes.byteLength; ) {
      const count = readSync(this.fd, bytes, read, bytes.byteLength - read, info.start + read);
      if (count === 0) throw new Error(`${basename(this.path)} is truncated: ${name} could not be read`);
      read += count;
    }
    switch (info.dtype) {
      case 'F32':
        return new Float32Array(bytes.buffer);
      case 'F16':
        return float16ToFloat32(new Uint16Array(bytes.buffer));
      case 'BF16': {
        const halves = new Uint16Array(bytes.buffer);
        const words = new Uint32Array(halves.length);
        for (let i = 0; i < halves.length; i++) words[i] = halves[i] << 16;
        return new Float32Array(words.buffer);
      }
      default:
        return Float32Array.from(new Float64Array(bytes.buffer));
    }
  }

  close(): void {
    closeSync(this.fd);
  }
}

function readHeader(fd: number, path: string): { tensors: Map<string, TensorInfo>; metadata: Record<string, string> } {
  const name = basename(path);
  const size = fstatSync(fd).size;
  const prefix = new Uint8Array(Math.min(size, 8));
  readSync(fd, prefix, 0, prefix.byteLength, 0);
  if (looksLikePickle(prefix)) throw pickleRefusal(path);
  const notSafetensors = (why: string) => new Error(`${name} is not a .safetensors file (${why})`);
  if (size < 8) throw notSafetensors(`only ${size} bytes`);

  const headerLength = Number(new DataView(prefix.buffer).getBigUint64(0, true));
  if (headerLength < 2 || headerLength > MAX_HEADER_BYTES) throw notSafetensors(`its first 8 bytes give a header of ${headerLength} bytes`);
  if (8 + headerLength > size) throw new Error(`${name} is truncated: its header needs ${8 + headerLength} bytes, the file has ${size}`);
  const headerBytes = new Uint8Array(headerLength);
  readSync(fd, headerBytes, 0, headerLength, 8);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch {
    throw notSafetensors('its header is not JSON');
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) throw notSafetensors('its header is not a JSON object');

  const dataStart = 8 + headerLength;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [key, value] of Object.entries(header as Record<string, unknown>)) {
    if (key === '__metadata__') {
      metadata = Object.fromEntries(Object.entries((value ?? {}) as Record<string, unknown>).map(([k, v]) => [k, String(v)]));
      continue;
    }
    const entry = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const dtype = entry?.dtype;
    if (typeof dtype !== 'string' || !(dtype in ITEM_BYTES)) throw notSafetensors(`tensor ${key} has dtype ${JSON.stringify(dtype)}`);
    const shape = entry.shape;
    const offsets = entry.data_offsets;
    if (!Array.isArray(shape) || !shape.every((dim) => Number.isInteger(dim) && dim >= 0)) throw notSafetensors(`tensor ${key} has no valid shape`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((offset) => Number.isInteger(offset) && offset >= 0) || offsets[0] > offsets[1]) {
      throw notSafetensors(`tensor ${key} has no valid data_offsets`);
    }
    const expected = shape.reduce((a: number, b: number) => a * b, 1) * ITEM_BYTES[dtype as SafetensorsDtype];
    if (offsets[1] - offsets[0] !== expected) throw notSafetensors(`tensor ${key} has ${offsets[1] - offsets[0]} bytes for shape [${shape.join(', ')}] of ${dtype}`);
    const start = dataStart + offsets[0];
    const end = dataStart + offsets[1];
    if (end > size) throw new Error(`${name} is truncated: tensor ${key} ends at byte ${end} but the file has ${size} bytes (an interrupted download?)`);
    tensors.set(key, { dtype: dtype as SafetensorsDtype, shape, start, end });
  }
  return { tensors, metadata };
}

/** Zip archives (torch.save since 1.6) and raw pickles (protocol 2+ starts with 0x80). */
function looksLikePickle(prefix: Uint8Array): boolean {
  const zip = prefix[0] === 0x50 && prefix[1] === 0x4b && prefix[2] === 0x03 && prefix[3] === 0x04;
  return zip || (prefix[0] === 0x80 && prefix[1] >= 2 && prefix[1] <= 5);
}

/** One tensor of a .safetensors file, its values widened to float32. */
export interface FloatTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  data: Float32Array;
}

/** Every floating-point tensor of a small .safetensors file (an embedding, say), read at once. */
export function readFloatTensors(path: string): Map<string, FloatTensor> {
  const file = SafetensorsFile.open(path);
  try {
    const tensors = new Map<string, FloatTensor>();
    for (const [name, info] of file.tensors) {
      if (FLOAT_DTYPES.includes(info.dtype)) tensors.set(name, { dtype: info.dtype, shape: info.shape, data: file.readFloat32(name) });
    }
    return tensors;
  } finally {
    file.close();
  }
}

/** Tensors spread over one or more safetensors files (a sharded checkpoint), looked up by name. */
export class SafetensorsSet {
  private readonly owner = new Map<string, SafetensorsFile>();

  constructor(readonly files: SafetensorsFile[]) {
    for (const file of files) for (const name of file.tensors.keys()) this.owner.set(name, file);
  }

  get names(): IterableIterator<string> {
    return this.owner.keys();
  }

  has(name: string): boolean {
    return this.owner.has(name);
  }

  info(name: string): TensorInfo | undefined {
    return this.owner.get(name)?.tensors.get(name);
  }

  readFloat32(name: string): Float32Array {
    const file = this.owner.get(name);
    if (!file) throw new Error(`no tensor ${name}`);
    return file.readFloat32(name);
  }

  close(): void {
    for (const file of this.files) file.close();
  }
}

export interface TensorToWrite {
  name: string;
  dtype: 'F32' | 'F16';
  shape: number[];
}

/**
 * Writes a .safetensors file tensor by tensor: the header is laid out from the names and shapes first, then each
 * tensor's data is appended as it is produced, so a checkpoint of any size is written holding one tensor.
 */
export class SafetensorsWriter {
  private readonly fd: number;
  private readonly expected: { name: string; bytes: number }[];
  private next = 0;
  private position: number;

  constructor(path: string, tensors: readonly TensorToWrite[], metadata: Record<string, string> = {}) {
    const header: Record<string, unknown> = Object.keys(metadata).length > 0 ? { __metadata__: metadata } : {};
    let offset = 0;
    this.expected = tensors.map(({ name, dtype, shape }) => {
      const bytes = shape.reduce((a, b) => a * b, 1) * ITEM_BYTES[dtype];
      header[name] = { dtype, shape, data_offsets: [offset, offset + bytes] };
      offset += bytes;
      return { name, bytes };
    });
    let json = JSON.stringify(header);
    // Pad the header with spaces so the data starts 8-byte aligned, as the reference writer does.
    json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
    const headerBytes = Buffer.from(json);
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(BigInt(headerBytes.byteLength));
    this.fd = openSync(path, 'w');
    writeAll(this.fd, prefix, 0);
    writeAll(this.fd, headerBytes, 8);
    this.position = 8 + headerBytes.byteLength;
  }

  /** The next tensor's data, in the order the tensors were declared. */
  write(name: string, data: Float32Array | Uint16Array): void {
    const expected = this.expected[this.next];
    if (!expected || expected.name !== name) throw new Error(`safetensors writer: expected ${expected?.name ?? 'no more tensors'}, got ${name}`);
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (bytes.byteLength !== expected.bytes) throw new Error(`safetensors writer: ${name} has ${bytes.byteLength} bytes, its header says ${expected.bytes}`);
    writeAll(this.fd, bytes, this.position);
    this.position += bytes.byteLength;
    this.next++;
  }

  close(): void {
    closeSync(this.fd);
    if (this.next !== this.expected.length) throw new Error(`safetensors writer: closed after ${this.next} of ${this.expected.length} tensors`);
  }

  /** Closes the file after a failure (the caller removes it). */
  abort(): void {
    closeSync(this.fd);
  }
}

function writeAll(fd: number, bytes: Uint8Array, position: number): void {
  for (let written = 0; written < bytes.byteLength; ) written += writeSync(fd, bytes, written, bytes.byteLength - written, position + written);
}
