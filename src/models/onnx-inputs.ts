import { open, type FileHandle } from 'node:fs/promises';

/** A graph input as declared in an ONNX file: element type and dimensions (numbers, or symbolic names). */
export interface OnnxInput {
  name: string;
  elemType: number;
  shape: (number | string)[];
}

export const ONNX_FLOAT = 1;
export const ONNX_FLOAT16 = 10;

// Field numbers from onnx.proto: ModelProto.graph = 7; GraphProto.input = 11; ValueInfoProto.name = 1, .type = 2;
// TypeProto.tensor_type = 1; Tensor.elem_type = 1, .shape = 2; TensorShapeProto.dim = 1; Dimension.dim_value = 1,
// .dim_param = 2.
const MODEL_GRAPH = 7;
const GRAPH_INPUT = 11;
const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_BYTES = 2;
const WIRE_FIXED32 = 5;
const MAX_INPUT_BYTES = 1 << 20;
const WINDOW = 4096;

/** Reads from a file at arbitrary positions through a small window, so skipping weights costs no I/O. */
class Cursor {
  private window = Buffer.alloc(0);
  private windowStart = 0;

  constructor(
    private readonly handle: FileHandle,
    public position: number,
  ) {}

  private async byteAt(position: number): Promise<number> {
    if (position < this.windowStart || position >= this.windowStart + this.window.length) {
      const buffer = Buffer.alloc(WINDOW);
      const { bytesRead } = await this.handle.read(buffer, 0, WINDOW, position);
      if (bytesRead === 0) throw new Error('unexpected end of file');
      this.window = buffer.subarray(0, bytesRead);
      this.windowStart = position;
    }
    return this.window[position - this.windowStart];
  }

  async varint(): Promise<number> {
    let value = 0;
    for (let shift = 0; shift < 64; shift += 7) {
      const byte = await this.byteAt(this.position++);
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
    }
    throw new Error('malformed varint');
  }

  async bytes(length: number): Promise<Buffer> {
    const buffer = Buffer.alloc(length);
    const { bytesRead } = await this.handle.read(buffer, 0, length, this.position);
    if (bytesRead !== length) throw new Error('unexpected end of file');
    this.position += length;
    return buffer;
  }

  async skip(wireType: number): Promise<void> {
    if (wireType === WIRE_VARINT) await this.varint();
    else if (wireType === WIRE_FIXED64) this.position += 8;
    else if (wireType === WIRE_BYTES) {
      const length = await this.varint();
      this.position += length;
    }
    else if (wireType === WIRE_FIXED32) this.position += 4;
    else throw new Error(`unsupported protobuf wire type ${wireType}`);
  }
}

/** Protobuf fields of an in-memory message, as [field number, wire type, value] (value: number or bytes). */
function* fields(buffer: Buffer): Generator<[number, number, number | Buffer]> {
  let offset = 0;
  const varint = () => {
    let value = 0;
    for (let shift = 0; ; shift += 7) {
      const byte = buffer[offset++];
      if (byte === undefined || shift > 63) throw new Error('malformed varint');
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
    }
  };
  while (offset < buffer.length) {
    const key = varint();
    const wireType = key & 7;
    const field = Math.floor(key / 8);
    if (wireType === WIRE_VARINT) yield [field, wireType, varint()];
    else if (wireType === WIRE_BYTES) {
      const length = varint();
      yield [field, wireType, buffer.subarray(offset, offset + length)];
      offset += length;
    } else if (wireType === WIRE_FIXED64) offset += 8;
    else if (wireType === WIRE_FIXED32) offset += 4;
    else throw new Error(`unsupported protobuf wire type ${wireType}`);
  }
}

function parseValueInfo(buffer: Buffer): OnnxInput {
  const input: OnnxInput = { name: '', elemType: 0, shape: [] };
  for (const [field, , value] of fields(buffer)) {
    if (field === 1 && Buffer.isBuffer(value)) input.name = value.toString('utf8');
    if (field !== 2 || !Buffer.isBuffer(value)) continue;
    for (const [typeField, , tensor] of fields(value)) {
      if (typeField !== 1 || !Buffer.isBuffer(tensor)) continue;
      for (const [tensorField, , tensorValue] of fields(tensor)) {
        if (tensorField === 1 && typeof tensorValue === 'number') input.elemType = tensorValue;
        if (tensorField !== 2 || !Buffer.isBuffer(tensorValue)) continue;
        for (const [, , dim] of fields(tensorValue)) {
          if (!Buffer.isBuffer(dim)) continue;
          let size: number | string = '?';
          for (const [dimField, , dimValue] of fields(dim)) {
            if (dimField === 1 && typeof dimValue === 'number') size = dimValue;
            if (dimField === 2 && Buffer.isBuffer(dimValue)) size = dimValue.toString('utf8');
          }
          input.shape.push(size);
        }
      }
    }
  }
  return input;
}

/**
 * The declared inputs of an ONNX model, read without loading it: the file is walked field by field and node and
 * weight data are skipped over, so even a multi-gigabyte graph costs a few reads.
 */
export async function readOnnxInputs(path: string): Promise<OnnxInput[]> {
  const handle = await open(path, 'r');
  try {
    const size = (await handle.stat()).size;
    const cursor = new Cursor(handle, 0);
    const inputs: OnnxInput[] = [];
    while (cursor.position < size) {
      const key = await cursor.varint();
      if (Math.floor(key / 8) !== MODEL_GRAPH || (key & 7) !== WIRE_BYTES) {
        await cursor.skip(key & 7);
        continue;
      }
      const graphLength = await cursor.varint();
      const graphEnd = cursor.position + graphLength;
      while (cursor.position < graphEnd) {
        const graphKey = await cursor.varint();
        if (Math.floor(graphKey / 8) === GRAPH_INPUT && (graphKey & 7) === WIRE_BYTES) {
          const length = await cursor.varint();
          if (length > MAX_INPUT_BYTES) throw new Error('graph input description is implausibly large');
          inputs.push(parseValueInfo(await cursor.bytes(length)));
        } else {
          await cursor.skip(graphKey & 7);
        }
      }
    }
    return inputs;
  } catch (error) {
    throw new Error(`Cannot read the inputs of ${path}: ${(error as Error).message}`);
  } finally {
    await handle.close();
  }
}
