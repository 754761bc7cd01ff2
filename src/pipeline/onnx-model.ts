import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import onnxProto from 'onnx-proto';
import type { onnx as OnnxTypes } from 'onnx-proto';
import ort from 'onnxruntime-node';
import { fuseAttention } from './attention-fusion.ts';
import { float16ToFloat32, float32ToFloat16 } from './float16.ts';
import { graphForCpu } from './float32-graph.ts';
import { type GpuFusions, fixInputDimensions, fuseForGpu, totalFusions } from './gpu-fusion.ts';
import { providerStartFailure } from './provider-check.ts';

// onnx-proto is CommonJS (module.exports = root), so its namespace is reached through the default export.
const { onnx } = onnxProto;

export const EXECUTION_PROVIDERS = ['cpu', 'cuda', 'dml', 'coreml', 'webgpu'] as const;
export type ExecutionProvider = (typeof EXECUTION_PROVIDERS)[number];

export type FloatType = 'float32' | 'float16';
export type TensorInputMetadata = ort.InferenceSession.TensorValueMetadata;

/** Time spent inside onnxruntime, so callers can tell our own overhead from the models'. */
export interface OnnxClock {
  runMs: number;
  /** Called after every session.run with the model's label and that call's milliseconds (benchmarks use it). */
  onRun?: (label: string, ms: number) => void;
}

export interface ModelLoadOptions {
  executionProvider: ExecutionProvider;
  clock: OnnxClock;
  /**
   * On the CPU, run the graph's attention as onnxruntime's fused MultiHeadAttention (see attention-fusion.ts):
   * the same numbers to float rounding, without the score matrices that dominate SD's memory at 512x512.
   */
  fuseAttention: boolean;
  /** On the CPU, run a graph with float16 weights as its float32 copy (default true; see float32-graph.ts). */
  float32OnCpu?: boolean;
  /**
   * On the CPU, let onnxruntime run convolutions in its blocked NCHWc layout (default true). The layout is faster,
   * but copies each feature map into and out of it: see VaeDecoder.load for where that costs more than it gains.
   */
  blockedLayout?: boolean;
  /**
   * On cuda and webgpu, rewrite the graph into the fused operators those providers implement (see gpu-fusion.ts).
   * Off by default until measured on GPUs; nothing changes on the CPU.
   */
  gpuFusion?: boolean;
  /** Per graph input, sizes to fix its free dimensions to (see fixInputDimensions); the session then runs only those. */
  inputDimensions?: Record<string, readonly (number | undefined)[]>;
}

/** One ONNX graph of the model (text encoder, U-Net, VAE decoder) with its inputs described by the session. */
export class OnnxModel {
  private constructor(
    readonly label: string,
    private readonly session: ort.InferenceSession,
    private readonly clock: OnnxClock,
    /** How many attention blocks run fused (0 when fusion was off or found none). */
    readonly fusedAttentions: number,
    /** What the GPU rewrite fused (undefined when it did not run or onnxruntime refused its graph). */
    readonly gpuFusions?: GpuFusions,
  ) {}

  /** `edit` changes the graph before the session is made (see createSession). */
  static async load(path: string, label: string, options: ModelLoadOptions, edit?: GraphEdit): Promise<OnnxModel> {
    if (!existsSync(path)) throw new Error(`${label}: missing ${path}`);
    try {
      if (options.executionProvider === 'cpu' && (options.float32OnCpu ?? true)) path = await graphForCpu(path);
      let fusedAttentions = 0;
      let gpuFusions: GpuFusions | undefined;
      const provider = options.executionProvider;
      const fuse = options.fuseAttention && provider === 'cpu';
      const fusion: GraphEdit | undefined = fuse ? (model) => (fusedAttentions = fuseAttention(model)) > 0 : undefined;
      const gpuFusion: GraphEdit | undefined =
        options.gpuFusion && (provider === 'cuda' || provider === 'webgpu') ? (model) => totalFusions((gpuFusions = fuseForGpu(model, provider))) > 0 : undefined;
      const dimensions = options.inputDimensions;
      const staticShape: GraphEdit | undefined = dimensions ? (model) => fixInputDimensions(model, dimensions).size > 0 : undefined;
      const edits = [fusion, gpuFusion, staticShape, edit].filter((candidate) => candidate !== undefined);
      const { session, edited } = await createSession(path, sessionOptions(provider, options.blockedLayout ?? true), edits.length > 0 ? (model) => edits.map((apply) => apply(model)).some(Boolean) : undefined);
      return new OnnxModel(label, session, options.clock, edited ? fusedAttentions : 0, edited ? gpuFusions : undefined);
    } catch (error) {
      const providerProblem = providerStartFailure(options.executionProvider, error);
      if (providerProblem) throw new Error(providerProblem, { cause: error });
      throw new Error(`${label}: onnxruntime could not load ${path}: ${(error as Error).message}`);
    }
  }

  get inputNames(): readonly string[] {
    return this.session.inputNames;
  }

  hasInput(name: string): boolean {
    return this.session.inputNames.includes(name);
  }

  input(name: string): TensorInputMetadata {
    const meta = this.session.inputMetadata.find((input) => input.name === name);
    if (!meta) {
      throw new Error(`${this.label}: the model has no input "${name}" (its inputs: ${this.session.inputNames.join(', ')})`);
    }
    if (!meta.isTensor) throw new Error(`${this.label}: input "${name}" is not a tensor`);
    return meta;
  }

  /** Fails with a clear message when the graph needs an input this pipeline does not provide. */
  expectOnlyInputs(names: readonly string[]): void {
    const unknown = this.session.inputNames.filter((name) => !names.includes(name));
    if (unknown.length > 0) {
      throw new Error(`${this.label}: unsupported model input(s) ${unknown.join(', ')} (expected ${names.join(', ')})`);
    }
  }

  outputName(preferred: string): string {
    if (this.session.outputNames.includes(preferred)) return preferred;
    return this.session.outputNames[0];
  }

  get outputNames(): readonly string[] {
    return this.session.outputNames;
  }

  /** `name`, failing with a clear message when the graph lacks it; `what` says what it is for. */
  requireOutput(name: string, what: string): string {
    if (this.session.outputNames.includes(name)) return name;
    throw new Error(`${this.label}: the model has no output "${name}", ${what} (its outputs: ${this.session.outputNames.join(', ')})`);
  }

  hasOutput(name: string): boolean {
    return this.session.outputNames.includes(name);
  }

  async run(feeds: Record<string, ort.Tensor>, outputName: string): Promise<ort.Tensor> {
    return (await this.runOutputs(feeds, [outputName]))[outputName];
  }

  async runOutputs(feeds: Record<string, ort.Tensor>, outputNames: readonly string[]): Promise<Record<string, ort.Tensor>> {
    const started = performance.now();
    try {
      return await this.session.run(feeds, outputNames);
    } catch (error) {
      throw new Error(`${this.label}: onnxruntime failed: ${(error as Error).message}`);
    } finally {
      const elapsed = performance.now() - started;
      this.clock.runMs += elapsed;
      this.clock.onRun?.(this.label, elapsed);
    }
  }

  release(): Promise<void> {
    return this.session.release();
  }
}

/** Changes a decoded graph in place; returns whether it changed anything. */
export type GraphEdit = (model: OnnxTypes.IModelProto) => boolean;

/**
 * A session for one graph file; with `edit`, the graph is decoded and edited first (attention fused for the CPU,
 * see attention-fusion.ts; inputs added, see token-embedding-override.ts). Should onnxruntime refuse the edited
 * graph, the file is loaded as it is (`edited` false): slower and larger, or without the added inputs, but it runs.
 */
export async function createSession(
  path: string,
  options: ort.InferenceSession.SessionOptions,
  edit?: GraphEdit,
): Promise<{ session: ort.InferenceSession; edited: boolean }> {
  if (edit) {
    const model = onnx.ModelProto.decode(await readFile(path));
    if (edit(model)) {
      const extra = (options.extra ?? {}) as { session?: Record<string, unknown> };
      try {
        const session = await ort.InferenceSession.create(onnx.ModelProto.encode(model).finish(), {
          ...options,
          // Loaded from bytes, the graph's external weights are found relative to this folder.
          extra: { ...extra, session: { ...extra.session, model_external_initializers_file_folder_path: dirname(path) } },
        });
        return { session, edited: true };
      } catch {
        // fall through to the graph as exported
      }
    }
  }
  return { session: await ort.InferenceSession.create(path, options), edited: false };
}

/**
 * Chosen by measurement on the SD 1.5-size U-Net at 512x512 (src/bench/session-sweep.ts, numbers in BENCHMARKS.md):
 * 'all' runs it 2-4× faster than 'extended' or 'basic' (its NCHWc conv layout) at the price of a slower load;
 * ORT's default thread count (one per physical core) beats 1 thread by 2×; the memory pattern saves no time but
 * holds more at peak (2.4 GB with attention unfused, 0.17 GB fused), so it is off; the arena stays, as dropping it
 * made every step slower (and, fused, held more at peak).
 */
export function sessionOptions(executionProvider: ExecutionProvider, blockedLayout = true): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: [executionProvider],
    graphOptimizationLevel: 'all',
    enableCpuMemArena: true,
    enableMemPattern: false,
    ...(!blockedLayout && { extra: { optimization: { disable_specified_optimizers: 'NchwcTransformer' } } }),
  };
}

export function floatTensorType(meta: TensorInputMetadata): FloatType {
  if (meta.type === 'float32' || meta.type === 'float16') return meta.type;
  throw new Error(`input "${meta.name}" has type ${meta.type}; expected float32 or float16`);
}

export function floatTensor(values: Float32Array, dims: readonly number[], type: FloatType): ort.Tensor {
  return type === 'float16' ? new ort.Tensor('float16', float32ToFloat16(values), dims) : new ort.Tensor('float32', values, dims);
}

export function toFloat32(tensor: ort.Tensor): Float32Array {
  if (tensor.type === 'float32') return tensor.data as Float32Array;
  if (tensor.type === 'float16') return float16ToFloat32(tensor.data as Uint16Array);
  throw new Error(`expected a float tensor, got ${tensor.type}`);
}
