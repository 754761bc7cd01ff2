import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { OnnxModel, floatTensor, floatTensorType, toFloat32, type FloatType, type ModelLoadOptions } from './onnx-model.ts';
import { OVERRIDE_MASK_INPUT, OVERRIDE_VECTORS_INPUT, addTokenEmbeddingOverride } from './token-embedding-override.ts';

export interface TextEmbedding {
  /** [1, sequenceLength, width] as float32. */
  data: Float32Array;
  sequenceLength: number;
  width: number;
}

/** Vectors ([count, width], row after row) that take the place of the token embeddings from position `offset` on. */
export interface TokenVectors {
  offset: number;
  vectors: Float32Array;
}

/** CLIP text encoder: token ids → the hidden states the U-Net attends to. */
export class TextEncoder {
  private constructor(
    private readonly model: OnnxModel,
    private readonly idsType: 'int32' | 'int64',
    private readonly outputName: string,
    /** How the graph takes textual-inversion vectors, when it could be made to (see token-embedding-override.ts). */
    private readonly overrides: { type: FloatType; width: number } | undefined,
  ) {}

  static async load(modelDir: string, options: ModelLoadOptions): Promise<TextEncoder> {
    // CLIP's attention is causally masked, which fusion leaves alone: reading the graph would only cost time.
    const path = join(modelDir, 'text_encoder', 'model.onnx');
    const model = await OnnxModel.load(path, 'text_encoder', { ...options, fuseAttention: false }, addTokenEmbeddingOverride);
    const ids = model.input('input_ids');
    if (ids.type !== 'int32' && ids.type !== 'int64') {
      throw new Error(`text_encoder: input_ids has type ${ids.type}; expected int32 or int64`);
    }
    const overridable = model.hasInput(OVERRIDE_VECTORS_INPUT) && model.hasInput(OVERRIDE_MASK_INPUT);
    model.expectOnlyInputs(overridable ? ['input_ids', OVERRIDE_VECTORS_INPUT, OVERRIDE_MASK_INPUT] : ['input_ids']);
    const vectors = overridable ? model.input(OVERRIDE_VECTORS_INPUT) : undefined;
    const overrides = vectors ? { type: floatTensorType(vectors), width: Number(vectors.shape[2]) } : undefined;
    return new TextEncoder(model, ids.type, model.outputName('last_hidden_state'), overrides);
  }

  /** Whether `encode` can put textual-inversion vectors in place of token embeddings; their width when it can. */
  get tokenVectorWidth(): number | undefined {
    return this.overrides?.width;
  }

  async encode(tokenIds: readonly number[], replacements: readonly TokenVectors[] = []): Promise<TextEmbedding> {
    const dims = [1, tokenIds.length];
    const feeds: Record<string, ort.Tensor> = {
      input_ids:
        this.idsType === 'int64'
          ? new ort.Tensor('int64', BigInt64Array.from(tokenIds, (id) => BigInt(id)), dims)
          : new ort.Tensor('int32', Int32Array.from(tokenIds), dims),
    };
    if (this.overrides) Object.assign(feeds, this.overrideFeeds(tokenIds.length, replacements, this.overrides));
    else if (replacements.length > 0) throw new Error('text_encoder: this export cannot take textual-inversion vectors');
    const hidden = await this.model.run(feeds, this.outputName);
    const [, sequenceLength, width] = hidden.dims;
    return { data: toFloat32(hidden), sequenceLength, width };
  }

  release(): Promise<void> {
    return this.model.release();
  }

  private overrideFeeds(length: number, replacements: readonly TokenVectors[], { type, width }: { type: FloatType; width: number }): Record<string, ort.Tensor> {
    const vectors = new Float32Array(length * width);
    const mask = new Uint8Array(length);
    for (const { offset, vectors: rows } of replacements) {
      const count = rows.length / width;
      if (!Number.isInteger(count) || offset < 0 || offset + count > length) {
        throw new Error(`text_encoder: ${rows.length} values at position ${offset} are not whole ${width}-wide vectors within ${length} tokens`);
      }
      vectors.set(rows, offset * width);
      mask.fill(1, offset, offset + count);
    }
    return {
      [OVERRIDE_VECTORS_INPUT]: floatTensor(vectors, [1, length, width], type),
      [OVERRIDE_MASK_INPUT]: new ort.Tensor('bool', mask, [1, length, 1]),
    };
  }
}
