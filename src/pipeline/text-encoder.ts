import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { OnnxModel, toFloat32, type ModelLoadOptions } from './onnx-model.ts';

export interface TextEmbedding {
  /** [1, sequenceLength, width] as float32. */
  data: Float32Array;
  sequenceLength: number;
  width: number;
}

/** CLIP text encoder: 77 token ids → the hidden states the U-Net attends to. */
export class TextEncoder {
  private constructor(
    private readonly model: OnnxModel,
    private readonly idsType: 'int32' | 'int64',
    private readonly outputName: string,
  ) {}

  static async load(modelDir: string, options: ModelLoadOptions): Promise<TextEncoder> {
    // CLIP's attention is causally masked, which fusion leaves alone: reading the graph would only cost time.
    const path = join(modelDir, 'text_encoder', 'model.onnx');
    const model = await OnnxModel.load(path, 'text_encoder', { ...options, fuseAttention: false });
    const ids = model.input('input_ids');
    if (ids.type !== 'int32' && ids.type !== 'int64') {
      throw new Error(`text_encoder: input_ids has type ${ids.type}; expected int32 or int64`);
    }
    model.expectOnlyInputs(['input_ids']);
    return new TextEncoder(model, ids.type, model.outputName('last_hidden_state'));
  }

  async encode(tokenIds: readonly number[]): Promise<TextEmbedding> {
    const dims = [1, tokenIds.length];
    const ids =
      this.idsType === 'int64'
        ? new ort.Tensor('int64', BigInt64Array.from(tokenIds, (id) => BigInt(id)), dims)
        : new ort.Tensor('int32', Int32Array.from(tokenIds), dims);
    const hidden = await this.model.run({ input_ids: ids }, this.outputName);
    const [, sequenceLength, width] = hidden.dims;
    return { data: toFloat32(hidden), sequenceLength, width };
  }

  release(): Promise<void> {
    return this.model.release();
  }
}
