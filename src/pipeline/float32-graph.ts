import { closeSync, existsSync, openSync, readSync } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import onnxProto from 'onnx-proto';
import type { onnx as OnnxTypes } from 'onnx-proto';
import { ExternalDataFile } from '../graphs/external-data.ts';
import { float16ToFloat32 } from './float16.ts';
import { readOnnxOutline } from './onnx-outline.ts';

// onnx-proto is CommonJS (module.exports = root), so its namespace is reached through the default export.
const { onnx } = onnxProto;
const { DataType } = onnx.TensorProto;
const { AttributeType } = onnx.AttributeProto;
type GraphProto = OnnxTypes.IGraphProto;
type TensorProto = OnnxTypes.ITensorProto;

const DATA_FILE = 'model.onnx_data';
/** Where the float32 copy of `<component>/model.onnx` goes: `<component>/.float32/`. */
const COPY_DIR = '.float32';
/** Beside the copy: the size and time of the file it was made from, so a replaced source is converted again. */
const SOURCE_STAMP = 'source.json';

/**
 * The graph file to run on the CPU: `path` itself, or for a graph with float16 weights its float32 copy, written
 * once beside it (and again when the source changes). Where that cannot be written (a read-only folder), the
 * graph as it is: slower, but it runs.
 */
export async function graphForCpu(path: string): Promise<string> {
  if (!(await readOnnxOutline(path)).float16Weights) return path;
  const copyDir = join(dirname(path), COPY_DIR);
  const copy = join(copyDir, 'model.onnx');
  const { size, mtimeMs } = await stat(path);
  const stamp = JSON.stringify({ size, mtimeMs });
  if (existsSync(copy) && (await readFile(join(copyDir, SOURCE_STAMP), 'utf8').catch(() => '')) === stamp) return copy;
  try {
    await writeFloat32Graph(path, copyDir, { [SOURCE_STAMP]: stamp });
    return copy;
  } catch (error) {
    if (['EACCES', 'EPERM', 'EROFS', 'ENOSPC'].includes((error as NodeJS.ErrnoException).code ?? '')) return path;
    throw error;
  }
}
/** Tensors smaller than this stay inside model.onnx, as onnx.save_model(save_as_external_data=True) does. */
const EXTERNAL_THRESHOLD_BYTES = 1024;

/**
 * Writes `targetDir/model.onnx` (+ model.onnx_data): the float16 graph at `sourcePath` computing in float32 — its
 * float16 weights, constants, inputs, outputs and casts widened, everything else as it was. The CPU has few
 * float16 kernels: onnxruntime runs most of an fp16 graph through casts to float32 and back, which is slower than
 * float32 throughout (BENCHMARKS.md). Widening is exact, so the result computes what the fp16 graph approximates.
 * Memory holds the graph and one tensor at a time besides the source file; the folder appears only when complete.
 */
export async function writeFloat32Graph(sourcePath: string, targetDir: string, extraFiles: Record<string, string> = {}): Promise<void> {
  const model = onnx.ModelProto.decode(await readFile(sourcePath));
  const staging = `${targetDir}.writing-${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { recursive: true });
  try {
    const output = ExternalDataFile.create(join(staging, DATA_FILE), DATA_FILE);
    const sources = new SourceData(dirname(sourcePath));
    try {
      widenGraph(model.graph!, (tensor) => placeTensor(tensor, sources, output));
    } finally {
      sources.close();
      output.close();
    }
    await writeFile(join(staging, 'model.onnx'), onnx.ModelProto.encode(model).finish());
    for (const [name, contents] of Object.entries(extraFiles)) await writeFile(join(staging, name), contents);
    await rm(targetDir, { recursive: true, force: true });
    await rename(staging, targetDir);
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
}

/** Widens every float16 type in `graph` and its subgraphs; `place` stores each (widened) tensor's data. */
function widenGraph(graph: GraphProto, place: (tensor: TensorProto) => void): void {
  for (const tensor of graph.initializer ?? []) place(tensor);
  for (const value of [...(graph.input ?? []), ...(graph.output ?? []), ...(graph.valueInfo ?? [])]) {
    const tensorType = value.type?.tensorType;
    if (tensorType?.elemType === DataType.FLOAT16) tensorType.elemType = DataType.FLOAT;
  }
  for (const node of graph.node ?? []) {
    for (const attribute of node.attribute ?? []) {
      // Cast's `to`, and the `dtype` of generators such as RandomNormalLike and EyeLike.
      if (attribute.type === AttributeType.INT && (attribute.name === 'to' || attribute.name === 'dtype') && Number(attribute.i) === DataType.FLOAT16) attribute.i = DataType.FLOAT;
      if (attribute.t) widenInline(attribute.t);
      for (const tensor of attribute.tensors ?? []) widenInline(tensor);
      if (attribute.g) widenGraph(attribute.g, place);
      for (const subgraph of attribute.graphs ?? []) widenGraph(subgraph, place);
    }
  }
}

/** A Constant's value and the like: small, inline. */
function widenInline(tensor: TensorProto): void {
  if (tensor.dataType !== DataType.FLOAT16) return;
  tensor.rawData = new Uint8Array(float16ToFloat32(halfBits(tensor, undefined)).buffer);
  tensor.int32Data = [];
  tensor.dataType = DataType.FLOAT;
}

/** Moves an initializer's data into the new graph's own external file (widened if float16), or keeps it inline when small. */
function placeTensor(tensor: TensorProto, sources: SourceData, output: ExternalDataFile): void {
  const external = tensor.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL;
  let bytes: Uint8Array | undefined = external ? sources.read(tensor) : undefined;
  if (tensor.dataType === DataType.FLOAT16) {
    bytes = new Uint8Array(float16ToFloat32(halfBits(tensor, bytes)).buffer);
    tensor.int32Data = [];
    tensor.dataType = DataType.FLOAT;
  }
  if (bytes === undefined) return;
  if (bytes.byteLength < EXTERNAL_THRESHOLD_BYTES) {
    tensor.rawData = bytes;
    tensor.dataLocation = onnx.TensorProto.DataLocation.DEFAULT;
    tensor.externalData = [];
    return;
  }
  const { offset, length } = output.append(bytes);
  tensor.rawData = new Uint8Array(0);
  tensor.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
  tensor.externalData = [
    { key: 'location', value: output.location },
    { key: 'offset', value: String(offset) },
    { key: 'length', value: String(length) },
  ];
}

/** A float16 tensor's bits: from its external bytes, its raw data, or int32_data (one value per entry). */
function halfBits(tensor: TensorProto, external: Uint8Array | undefined): Uint16Array {
  const raw = external ?? tensor.rawData;
  if (raw && raw.byteLength > 0) {
    // A copy: protobufjs hands out Buffers that share (unaligned) memory with the whole file.
    return new Uint16Array(new Uint8Array(raw).buffer);
  }
  return Uint16Array.from(tensor.int32Data ?? []);
}

/** The external data files of the source graph, read by each tensor's location, offset and length. */
class SourceData {
  private readonly files = new Map<string, number>();

  constructor(private readonly dir: string) {}

  read(tensor: TensorProto): Uint8Array {
    const entries = new Map((tensor.externalData ?? []).map(({ key, value }) => [key ?? '', value ?? '']));
    const location = entries.get('location');
    if (!location) throw new Error(`tensor ${tensor.name}: external data without a location`);
    let fd = this.files.get(location);
    if (fd === undefined) {
      fd = openSync(join(this.dir, location), 'r');
      this.files.set(location, fd);
    }
    const offset = Number(entries.get('offset') ?? 0);
    const length = Number(entries.get('length') ?? byteLengthOf(tensor));
    const bytes = new Uint8Array(length);
    for (let read = 0; read < length; ) {
      const count = readSync(fd, bytes, read, length - read, offset + read);
      if (count === 0) throw new Error(`tensor ${tensor.name}: ${location} ends before byte ${offset + length}`);
      read += count;
    }
    return bytes;
  }

  close(): void {
    for (const fd of this.files.values()) closeSync(fd);
  }
}

const BYTES_PER_ELEMENT: Partial<Record<number, number>> = {
  [DataType.FLOAT]: 4,
  [DataType.FLOAT16]: 2,
  [DataType.INT64]: 8,
  [DataType.INT32]: 4,
  [DataType.DOUBLE]: 8,
  [DataType.INT8]: 1,
  [DataType.UINT8]: 1,
  [DataType.BOOL]: 1,
};

function byteLengthOf(tensor: TensorProto): number {
  const size = BYTES_PER_ELEMENT[tensor.dataType ?? 0];
  if (size === undefined) throw new Error(`tensor ${tensor.name}: external data of type ${tensor.dataType} without a length`);
  return (tensor.dims ?? []).reduce<number>((product, dim) => product * Number(dim), size);
}
