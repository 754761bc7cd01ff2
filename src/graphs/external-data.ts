import { closeSync, openSync, writeSync } from 'node:fs';

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
