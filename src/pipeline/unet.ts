import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { toHalfBits } from './float16.ts';
import { repeatRows, timeIds } from './sdxl-conditioning.ts';
import { WorkSpace } from './work-space.ts';
import type { TextEmbedding } from './text-encoder.ts';
import type { GpuFusions } from './gpu-fusion.ts';
import {
  OnnxModel,
  floatTensor,
  floatTensorType,
  toFloat32,
  type FloatType,
  type ModelLoadOptions,
  type TensorInputMetadata,
} from './onnx-model.ts';

type TimestepShape = 'scalar' | 'one' | 'batch';

export interface LatentSize {
  height: number;
  width: number;
}

/** The U-Net's feeds that stay the same for a whole generation: the text conditioning (and SDXL's added conditions). */
export type UNetConditioning = Record<string, ort.Tensor>;

/** SDXL's added conditions, as the U-Net's inputs. */
const ADDED_CONDITIONS = ['text_embeds', 'time_ids'];
/**
 * The U-Net's CPU work space per image pixel and batch item, measured on an SD 1.5-size U-Net, attention fused, batch 1
 * (BENCHMARKS.md, "The VAE's work space"): 0.16 GB at 512x512, 0.62 GB at 1024x1024, 0.6 KB a pixel.
 */
const BYTES_PER_PIXEL = 700;

/** The denoising U-Net, adapted to however its exporter typed `sample`, `timestep` and `encoder_hidden_states`. */
export class UNet {
  private constructor(
    private readonly model: OnnxModel,
    private readonly sampleType: FloatType,
    private readonly contextType: FloatType,
    private readonly timestepType: 'float32' | 'float16' | 'int64',
    private readonly timestepShape: TimestepShape,
    private readonly outputName: string,
    /** Set when the graph was exported for one latent size only. */
    readonly fixedLatentSize: LatentSize | undefined,
    /** The context width the U-Net's cross-attention expects, when the export states it. */
    readonly contextWidth: number | undefined,
    /** Set when the graph was exported for one context length (77 tokens) only; long prompts need a dynamic one. */
    readonly fixedContextLength: number | undefined,
    /** The types of SDXL's `text_embeds` and `time_ids` inputs, when the U-Net has them. */
    private readonly addedConditionTypes: { textEmbeds: FloatType; timeIds: FloatType } | undefined,
    /** An LCM U-Net's `timestep_cond`: the width and type of its guidance embedding (see lcm.ts). */
    readonly timeCondition: { dim: number; type: FloatType } | undefined,
    /** The memory a call takes on the CPU beyond the weights, per image pixel of each batch item. */
    readonly workSpace: WorkSpace,
  ) {}

  /** Whether the U-Net takes SDXL's added conditions (the pooled text embedding and the size ids). */
  get takesAddedConditions(): boolean {
    return this.addedConditionTypes !== undefined;
  }

  static async load(modelDir: string, options: ModelLoadOptions): Promise<UNet> {
    const model = await OnnxModel.load(join(modelDir, 'unet', 'model.onnx'), 'unet', options);
    const added = ADDED_CONDITIONS.every((name) => model.hasInput(name));
    model.expectOnlyInputs(['sample', 'timestep', 'encoder_hidden_states', ...(added ? ADDED_CONDITIONS : []), 'timestep_cond']);
    const sample = model.input('sample');
    const timestep = model.input('timestep');
    const context = model.input('encoder_hidden_states');
    if (timestep.type !== 'float32' && timestep.type !== 'float16' && timestep.type !== 'int64') {
      throw new Error(`unet: timestep has type ${timestep.type}; expected float32, float16 or int64`);
    }
    const [, , latentHeight, latentWidth] = sample.shape;
    const fixedLatentSize =
      typeof latentHeight === 'number' && typeof latentWidth === 'number' && latentHeight > 0 && latentWidth > 0
        ? { height: latentHeight, width: latentWidth }
        : undefined;
    const [, contextLength, width] = context.shape;
    const timeCondition = model.hasInput('timestep_cond') ? timeConditionOf(model.input('timestep_cond')) : undefined;
    return new UNet(
      model,
      floatTensorType(sample),
      floatTensorType(context),
      timestep.type,
      timestepShapeOf(timestep),
      model.outputName('out_sample'),
      fixedLatentSize,
      typeof width === 'number' && width > 0 ? width : undefined,
      typeof contextLength === 'number' && contextLength > 0 ? contextLength : undefined,
      added ? { textEmbeds: floatTensorType(model.input('text_embeds')), timeIds: floatTensorType(model.input('time_ids')) } : undefined,
      timeCondition,
      new WorkSpace(options.executionProvider === 'cpu' ? BYTES_PER_PIXEL : 0),
    );
  }

  /**
   * The conditioning feeds of a whole generation, in the graph's float types: made once, not converted again at
   * every step (for an fp16 U-Net, 118k values: about 2 ms a step on a 2-core EPYC). `size` is the image's, for
   * SDXL's time_ids.
   */
  conditioning(embedding: TextEmbedding, size: { width: number; height: number }): UNetConditioning {
    const { data, sequenceLength, width } = embedding;
    const batch = data.length / (sequenceLength * width);
    const feeds: UNetConditioning = { encoder_hidden_states: floatTensor(data, [batch, sequenceLength, width], this.contextType) };
    if (!this.addedConditionTypes) return feeds;
    if (!embedding.pooled) throw new Error('unet: this SDXL U-Net needs the pooled text embedding (text_embeds), which the text encoders did not give');
    feeds.text_embeds = floatTensor(embedding.pooled, [batch, embedding.pooled.length / batch], this.addedConditionTypes.textEmbeds);
    feeds.time_ids = floatTensor(repeatRows(timeIds(size), batch), [batch, 6], this.addedConditionTypes.timeIds);
    return feeds;
  }

  /** An LCM U-Net's `timestep_cond` feed for one latent (see lcm.ts), made once per generation. */
  timeConditionTensor(values: Float32Array): ort.Tensor {
    if (values.length !== this.timeCondition?.dim) throw new Error(`unet: timestep_cond takes ${this.timeCondition?.dim ?? 'no'} values (got ${values.length})`);
    return floatTensor(values, [1, values.length], this.timeCondition.type);
  }

  /**
   * Predicts the noise (or v) for `batch` latents stacked in `sample` ([batch, 4, h, w]), each with its own row
   * of the conditioning (from `conditioning`; an LCM U-Net's, batch 1, with its `timestep_cond`).
   */
  async predict(sample: Float32Array, size: LatentSize, timestep: number, conditioning: UNetConditioning): Promise<Float32Array> {
    const batch = sample.length / (4 * size.height * size.width);
    const feeds: Record<string, ort.Tensor> = {
      sample: floatTensor(sample, [batch, 4, size.height, size.width], this.sampleType),
      timestep: this.timestepTensor(timestep, batch),
      ...conditioning,
    };
    const output = toFloat32(await this.model.run(feeds, this.outputName));
    this.workSpace.ran(batch * size.height * size.width * 64);
    return output;
  }

  private timestepTensor(timestep: number, batch: number): ort.Tensor {
    const count = this.timestepShape === 'batch' ? batch : 1;
    const dims = this.timestepShape === 'scalar' ? [] : [count];
    switch (this.timestepType) {
      // Float timesteps (Euler family) truncate toward zero, as numpy's astype(int64) does in diffusers' ONNX pipeline.
      case 'int64':
        return new ort.Tensor('int64', new BigInt64Array(count).fill(BigInt(Math.trunc(timestep))), dims);
      case 'float16':
        return new ort.Tensor('float16', new Uint16Array(count).fill(toHalfBits(timestep)), dims);
      case 'float32':
        return new ort.Tensor('float32', new Float32Array(count).fill(timestep), dims);
    }
  }

  /** Attention blocks running as onnxruntime's fused MultiHeadAttention. */
  get fusedAttentions(): number {
    return this.model.fusedAttentions;
  }

  /** What the GPU rewrite fused at load (see gpu-fusion.ts); undefined when it did not run. */
  get gpuFusions(): GpuFusions | undefined {
    return this.model.gpuFusions;
  }

  release(): Promise<void> {
    return this.model.release();
  }
}

function timeConditionOf(meta: TensorInputMetadata): { dim: number; type: FloatType } {
  const [, dim] = meta.shape;
  if (typeof dim !== 'number' || dim <= 0) throw new Error(`unet: timestep_cond has no fixed width (shape [${meta.shape.join(', ')}])`);
  return { dim, type: floatTensorType(meta) };
}

function timestepShapeOf(meta: TensorInputMetadata): TimestepShape {
  if (meta.shape.length === 0) return 'scalar';
  return meta.shape[0] === 1 ? 'one' : 'batch';
}
