import { type WeightSource, transpose2d } from '../graphs/weights.ts';
import type { TensorRef } from './ldm-keys.ts';
import type { SafetensorsSet, TensorInfo } from '../models/safetensors.ts';

/** Where each parameter of a component is in the checkpoint: candidates in order of preference. */
export type KeyMap = (name: string) => TensorRef[];

interface Located {
  ref: TensorRef;
  info: TensorInfo;
  /** The shape of the tensor as the graph gets it (after taking rows or transposing). */
  shape: number[];
}

/**
 * A component's trained weights, read tensor by tensor from safetensors files. A parameter is found under the
 * first candidate key the files hold; a tensor whose values match but whose shape only adds or drops size-1
 * axes (the VAE's attention stored as 1×1 convolutions) is taken as it is.
 */
export class CheckpointWeights implements WeightSource {
  constructor(
    readonly tensors: SafetensorsSet,
    private readonly component: string,
    private readonly keysFor: KeyMap,
  ) {}

  /** Why `name` cannot be read with `shape`, from the headers alone; undefined when it can. */
  check(name: string, shape: readonly number[]): string | undefined {
    const located = this.locate(name);
    if (typeof located === 'string') return located;
    if (!sameShape(located.shape, shape)) {
      return `${this.component}: ${name} is [${located.shape.join(', ')}] in the weights but the config makes it [${shape.join(', ')}]; the weights and the config do not belong together`;
    }
    return undefined;
  }

  read(name: string, shape: readonly number[]): Float32Array {
    const problem = this.check(name, shape);
    if (problem) throw new Error(problem);
    const { ref, info } = this.locate(name) as Located;
    let values = this.tensors.readFloat32(ref.key);
    if (ref.rows) {
      const rowSize = values.length / info.shape[0];
      values = values.slice(ref.rows.start * rowSize, ref.rows.end * rowSize);
    }
    if (ref.transposed) values = transpose2d(values, info.shape[0], info.shape[1]);
    return values;
  }

  private locate(name: string): Located | string {
    const candidates = this.keysFor(name);
    const ref = candidates.find((candidate) => this.tensors.has(candidate.key));
    if (!ref) {
      const looked = candidates.length > 0 ? ` (looked for ${candidates.map((candidate) => candidate.key).join(', ')})` : '';
      return `${this.component}: the weights have no ${name}${looked}`;
    }
    const info = this.tensors.info(ref.key)!;
    let shape = info.shape;
    if (ref.rows) {
      if (ref.rows.end > shape[0]) return `${this.component}: ${ref.key} has ${shape[0]} rows, fewer than ${name} needs`;
      shape = [ref.rows.end - ref.rows.start, ...shape.slice(1)];
    }
    if (ref.transposed) {
      if (shape.length !== 2) return `${this.component}: ${ref.key} is not a matrix`;
      shape = [shape[1], shape[0]];
    }
    return { ref, info, shape };
  }
}

function sameShape(stored: readonly number[], wanted: readonly number[]): boolean {
  const squeeze = (dims: readonly number[]) => dims.filter((dim) => dim !== 1).join(',');
  return squeeze(stored) === squeeze(wanted) && stored.reduce((a, b) => a * b, 1) === wanted.reduce((a, b) => a * b, 1);
}
