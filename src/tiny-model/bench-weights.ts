import { closeSync, openSync, writeSync } from 'node:fs';
import type { onnx as OnnxTypes } from 'onnx-proto';
import onnxProto from 'onnx-proto';
import { float32ToFloat16 } from '../pipeline/float16.ts';
import { GraphBuilder, type ModelProto, type Precision, type ValueSpec } from './graph.ts';

const { onnx } = onnxProto;

/** Like onnx.save_model(save_as_external_data=True): tensors smaller than this stay inside model.onnx. */
const EXTERNAL_THRESHOLD_BYTES = 1024;
/** onnx's external-data writer aligns tensors of 1 MiB and more to 64 KiB, which lets onnxruntime map them. */
const ALIGN_THRESHOLD_BYTES = 1 << 20;
const ALIGNMENT_BYTES = 64 << 10;

export interface ExternalPlace {
  offset: number;
  length: number;
}

/** One ONNX external data file, written tensor by tensor as the graph is built. */
export class ExternalDataFile {
  private end = 0;

  private constructor(
    private readonly fd: number,
    /** The file name as model.onnx refers to it (relative to the model's folder). */
    readonly location: string,
  ) {}

  static create(path: string, location: string): ExternalDataFile {
    return new ExternalDataFile(openSync(path, 'w'), location);
  }

  get byteLength(): number {
    return this.end;
  }

  append(bytes: Uint8Array): ExternalPlace {
    const offset = bytes.byteLength >= ALIGN_THRESHOLD_BYTES ? Math.ceil(this.end / ALIGNMENT_BYTES) * ALIGNMENT_BYTES : this.end;
    // Writing at an explicit position leaves any alignment gap as a zero-filled hole.
    for (let written = 0; written < bytes.byteLength; ) {
      written += writeSync(this.fd, bytes, written, bytes.byteLength - written, offset + written);
    }
    this.end = offset + bytes.byteLength;
    return { offset, length: bytes.byteLength };
  }

  close(): void {
    closeSync(this.fd);
  }
}

/**
 * A GraphBuilder for models too large to hold: every random parameter of 1 KiB or more goes to the external
 * data file the moment it is drawn, and only its place is kept. Without a file it draws nothing and only
 * counts parameters (to check a graph's size without writing gigabytes).
 */
export class StreamingGraphBuilder extends GraphBuilder {
  /** Trainable values added through parameter(), as torch's numel() would count them. */
  parameterCount = 0;
  private readonly places = new Map<string, ExternalPlace>();

  constructor(
    precision: Precision,
    private readonly draw: () => number,
    private readonly file: ExternalDataFile | undefined,
  ) {
    super(precision, draw);
  }

  override parameter(name: string, dims: number[], bound: number, center = 0): string {
    const count = dims.reduce((a, b) => a * b, 1);
    this.parameterCount += count;
    const bytesPerValue = this.precision === 'fp16' ? 2 : 4;
    if (this.file && count * bytesPerValue < EXTERNAL_THRESHOLD_BYTES) return super.parameter(name, dims, bound, center);

    // The initializer is declared here without data; toModel() points it at its place in the external file.
    const unique = this.floatConstant(name, dims, new Float32Array(0));
    if (this.file) {
      const values = new Float32Array(count);
      for (let i = 0; i < count; i++) values[i] = center + (2 * this.draw() - 1) * bound;
      const stored = this.precision === 'fp16' ? float32ToFloat16(values) : values;
      this.places.set(unique, this.file.append(new Uint8Array(stored.buffer, stored.byteOffset, stored.byteLength)));
    }
    return unique;
  }

  override toModel(graphName: string, inputs: ValueSpec[], outputs: ValueSpec[]): ModelProto {
    const model = super.toModel(graphName, inputs, outputs);
    const location = this.file?.location;
    if (location === undefined) return model;
    const initializer = (model.graph?.initializer ?? []).map((tensor): OnnxTypes.ITensorProto => {
      const place = this.places.get(tensor.name ?? '');
      if (!place) return tensor;
      return {
        ...tensor,
        rawData: null,
        dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
        externalData: [
          { key: 'location', value: location },
          { key: 'offset', value: String(place.offset) },
          { key: 'length', value: String(place.length) },
        ],
      };
    });
    return { ...model, producerName: 'imagine-bot bench-model', graph: { ...model.graph, initializer } };
  }
}
