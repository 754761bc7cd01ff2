import { open, type FileHandle } from 'node:fs/promises';

/** A graph input as declared in an ONNX file: element type and dimensions (numbers, or symbolic names). */
export interface OnnxInput {
  name: string;
  elemType: number;
  shape: (number | string)[];
}

export const ONNX_FLOAT = 1;
export const ONNX_FLOAT16 = 10;

/** What a graph declares and how it is built, as far as callers need it before loading it. */
export interface OnnxOutline {
  inputs: OnnxInput[];
  /**
   * Convolutions and pools with a stride above 1: in a U-Net, the times its down path halves the resolution, so
   * its inputs must be multiples of 2^strided (in latent pixels).
   */
  stridedNodes: number;
  /** The types of onnxruntime's own operators (domain com.microsoft) the graph uses, each once: fused kernels some providers lack. */
  microsoftOperators: string[];
  /** It stores weights as float16 (an fp16 export, including those whose inputs and outputs stay float32). */
  float16Weights: boolean;
}

// Field numbers from onnx.proto: ModelProto.graph = 7; GraphProto.node = 1, .input = 11; NodeProto.op_type = 4,
// .attribute = 5, .domain = 7; AttributeProto.name = 1, .ints = 8; ValueInfoProto.name = 1, .type = 2; TypeProto.tensor_type = 1;
// Tensor.elem_type = 1, .shape = 2; TensorShapeProto.dim = 1; Dimension.dim_value = 1, .dim_param = 2.
const MODEL_GRAPH = 7;
const GRAPH_NODE = 1;
const GRAPH_INITIALIZER = 5;
const GRAPH_INPUT = 11;
const TENSOR_DATA_TYPE = 2;
const STRIDED_OPS = /(Conv|Pool)$/;
const MICROSOFT_DOMAIN = 'com.microsoft';
const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_BYTES = 2;
const WIRE_FIXED32 = 5;
const MAX_MESSAGE_BYTES = 1 << 20;
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
    const offset = this.position - this.windowStart;
    if (offset >= 0 && offset + length <= this.window.length) {
      this.position += length;
      return this.window.subarray(offset, offset + length);
    }
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

/** A packed repeated integer field: varints back to back. */
function packedVarints(buffer: Buffer): number[] {
  const values: number[] = [];
  let value = 0;
  let shift = 0;
  for (const byte of buffer) {
    value += (byte & 0x7f) * 2 ** shift;
    shift += 7;
    if (byte < 0x80) {
      values.push(value);
      value = 0;
      shift = 0;
    }
  }
  return values;
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

/** A node's type and domain, and whether it is a convolution or pooling whose `strides` attribute steps by more than 1. */
function describeNode(node: Buffer): { opType: string; domain: string; strided: boolean } {
  let opType = '';
  let domain = '';
  let strided = false;
  for (const [field, , value] of fields(node)) {
    if (field === 4 && Buffer.isBuffer(value)) opType = value.toString('utf8');
    if (field === 7 && Buffer.isBuffer(value)) domain = value.toString('utf8');
    if (field !== 5 || !Buffer.isBuffer(value)) continue;
    let name = '';
    const ints: number[] = [];
    for (const [attributeField, wireType, attributeValue] of fields(value)) {
      if (attributeField === 1 && Buffer.isBuffer(attributeValue)) name = attributeValue.toString('utf8');
      if (attributeField !== 8) continue;
      if (typeof attributeValue === 'number') ints.push(attributeValue);
      else if (wireType === WIRE_BYTES && Buffer.isBuffer(attributeValue)) ints.push(...packedVarints(attributeValue));
    }
    if (name === 'strides' && ints.some((stride) => stride > 1)) strided = true;
  }
  return { opType, domain, strided: strided && STRIDED_OPS.test(opType) };
}

/** A TensorProto's data_type, which writers put before its name and data (fields in number order); 0 when absent. */
async function tensorDataType(cursor: Cursor, end: number): Promise<number> {
  while (cursor.position < end) {
    const key = await cursor.varint();
    if (Math.floor(key / 8) === TENSOR_DATA_TYPE && (key & 7) === WIRE_VARINT) return cursor.varint();
    await cursor.skip(key & 7);
  }
  return 0;
}

/**
 * The declared inputs of an ONNX model and its strided nodes, read without loading it: the file is walked field by
 * field and weight data are skipped over, so even a multi-gigabyte graph costs a few reads per node.
 */
export async function readOnnxOutline(path: string): Promise<OnnxOutline> {
  const handle = await open(path, 'r');
  try {
    const size = (await handle.stat()).size;
    const cursor = new Cursor(handle, 0);
    const outline: OnnxOutline = { inputs: [], stridedNodes: 0, microsoftOperators: [], float16Weights: false };
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
        const field = Math.floor(graphKey / 8);
        if ((field !== GRAPH_INPUT && field !== GRAPH_NODE && field !== GRAPH_INITIALIZER) || (graphKey & 7) !== WIRE_BYTES) {
          await cursor.skip(graphKey & 7);
          continue;
        }
        const length = await cursor.varint();
        if (field === GRAPH_INITIALIZER) {
          const end = cursor.position + length;
          if (!outline.float16Weights && (await tensorDataType(cursor, end)) === ONNX_FLOAT16) outline.float16Weights = true;
          cursor.position = end;
        } else if (field === GRAPH_INPUT) {
          if (length > MAX_MESSAGE_BYTES) throw new Error('graph input description is implausibly large');
          outline.inputs.push(parseValueInfo(await cursor.bytes(length)));
        } else if (length > MAX_MESSAGE_BYTES) {
          // A node this large carries a tensor (a Constant): no convolution.
          cursor.position += length;
        } else {
          const node = describeNode(await cursor.bytes(length));
          if (node.strided) outline.stridedNodes++;
          if (node.domain === MICROSOFT_DOMAIN && !outline.microsoftOperators.includes(node.opType)) outline.microsoftOperators.push(node.opType);
        }
      }
    }
    return outline;
  } catch (error) {
    throw new Error(`Cannot read the graph of ${path}: ${(error as Error).message}`);
  } finally {
    await handle.close();
  }
}
