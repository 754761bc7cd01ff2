import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { OnnxModel, floatTensor, floatTensorType, toFloat32, type FloatType, type ModelLoadOptions } from './onnx-model.ts';
import { OVERRIDE_MASK_INPUT, OVERRIDE_VECTORS_INPUT, addTokenEmbeddingOverride } from './token-embedding-override.ts';

export interface TextEmbedding {
  /** [1, sequenceLength, width] as float32. */
  data: Float32Array;
  sequenceLength: number;
  width: number;
  /** The projected pooled embedding (`text_embeds`), from a text encoder with a projection (SDXL's second). */
  pooled?: Float32Array;
}

/**
 * Which of a text encoder's outputs the U-Net conditions on: `last_hidden_state` (SD 1.x / 2.x), or the
 * penultimate layer's states before the final norm (SDXL: `hidden_states[-2]`); with `pooled`, also `text_embeds`.
 */
export interface TextEncoderRole {
  folder: 'text_encoder' | 'text_encoder_2';
  tokenizer: 'tokenizer' | 'tokenizer_2';
  hiddenState: 'last' | 'penultimate';
  pooled: boolean;
}

/** SD 1.x / 2.x: one text encoder, its last hidden state. */
export const SD_TEXT_ENCODERS: readonly TextEncoderRole[] = [{ folder: 'text_encoder', tokenizer: 'tokenizer', hiddenState: 'last', pooled: false }];

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
    private readonly pooledName: string | undefined,
    /** How the graph takes textual-inversion vectors, when it could be made to (see token-embedding-override.ts). */
    private readonly overrides: { type: FloatType; width: number } | undefined,
  ) {}

  static async load(modelDir: string, options: ModelLoadOptions, role: TextEncoderRole = SD_TEXT_ENCODERS[0]): Promise<TextEncoder> {
    // CLIP's attention is causally masked, which fusion leaves alone: reading the graph would only cost time.
    const path = join(modelDir, role.folder, 'model.onnx');
    const model = await OnnxModel.load(path, role.folder, { ...options, fuseAttention: false }, addTokenEmbeddingOverride);
    const ids = model.input('input_ids');
    if (ids.type !== 'int32' && ids.type !== 'int64') {
      throw new Error(`${role.folder}: input_ids has type ${ids.type}; expected int32 or int64`);
    }
    const overridable = model.hasInput(OVERRIDE_VECTORS_INPUT) && model.hasInput(OVERRIDE_MASK_INPUT);
    model.expectOnlyInputs(overridable ? ['input_ids', OVERRIDE_VECTORS_INPUT, OVERRIDE_MASK_INPUT] : ['input_ids']);
    const vectors = overridable ? model.input(OVERRIDE_VECTORS_INPUT) : undefined;
    const overrides = vectors ? { type: floatTensorType(vectors), width: Number(vectors.shape[2]) } : undefined;
    const hidden = role.hiddenState === 'last' ? model.outputName('last_hidden_state') : penultimateOutput(model, join(modelDir, role.folder));
    const pooled = role.pooled ? model.requireOutput('text_embeds', 'the pooled, projected embedding SDXL conditions on') : undefined;
    return new TextEncoder(model, ids.type, hidden, pooled, overrides);
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
    else if (replacements.length > 0) throw new Error(`${this.model.label}: this export cannot take textual-inversion vectors`);
    const outputs = await this.model.runOutputs(feeds, [this.outputName, ...(this.pooledName ? [this.pooledName] : [])]);
    const hidden = outputs[this.outputName];
    const [, sequenceLength, width] = hidden.dims;
    return { data: toFloat32(hidden), sequenceLength, width, ...(this.pooledName ? { pooled: toFloat32(outputs[this.pooledName]) } : {}) };
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

/**
 * The output holding hidden_states[-2]. Exports name the entries of hidden_states `hidden_states.{i}`, i = 0 (the
 * embeddings) to the number of layers (Optimum and Olive give them all; the project's builder only the one SDXL
 * uses): the penultimate is `hidden_states.{layers − 1}`, with the layer count from the folder's config.json.
 */
function penultimateOutput(model: OnnxModel, folder: string): string {
  const indices = model.outputNames.map((name) => /^hidden_states\.(\d+)$/.exec(name)).filter((match) => match !== null).map((match) => Number(match[1]));
  if (indices.length === 0) {
    throw new Error(`${model.label}: the export has no hidden_states outputs; SDXL conditions on the penultimate layer (export the text encoders with output_hidden_states)`);
  }
  const configPath = join(folder, 'config.json');
  const layers = existsSync(configPath) ? (JSON.parse(readFileSync(configPath, 'utf8')) as { num_hidden_layers?: unknown }).num_hidden_layers : undefined;
  const index = typeof layers === 'number' ? layers - 1 : indices.length === 1 ? indices[0] : Math.max(...indices) - 1;
  if (!indices.includes(index)) throw new Error(`${model.label}: the export has no hidden_states.${index} (the penultimate of its ${typeof layers === 'number' ? layers : '?'} layers)`);
  return `hidden_states.${index}`;
}
