import type { TextualInversion } from '../models/embeddings.ts';
import { parsePromptAttention } from '../prompt/attention-parser.ts';
import { CHUNK_LENGTH, chunkPrompt, type ChunkEmbedding, type EmbeddingMatcher, type PromptChunk } from '../prompt/chunker.ts';
import { applyEmphasis, padToSameLength } from '../prompt/emphasis.ts';
import type { TextEmbedding, TextEncoder } from './text-encoder.ts';
import type { ClipTokenizer } from './tokenizer.ts';
import { RequestError, type PromptSyntax } from './types.ts';

/** The most chunks of 75 tokens a prompt may take: 600 tokens. */
export const MAX_PROMPT_CHUNKS = 8;

/** A prompt that cannot be encoded as written (too long, a malformed weight); the message is for the user. */
export class PromptError extends RequestError {
  override name = 'PromptError';
}

/** An embedding as the chunker places it, with the vectors for this model's text encoder. */
interface PlacedEmbedding extends ChunkEmbedding {
  vectors: Float32Array;
}

/** A prompt cut into 77-id chunks, before the text encoder runs. */
export interface TokenizedPrompt {
  chunks: PromptChunk<PlacedEmbedding>[];
  tokenCount: number;
}

/**
 * Turns prompts into the U-Net's conditioning. With the AUTOMATIC1111 syntax (the default) a prompt is parsed
 * for weights and BREAK, cut into chunks of 75 tokens, textual-inversion embeddings placed by name; each chunk
 * is encoded on its own, weighted, and the chunks are joined: `[77·k, width]`. The plain syntax is diffusers':
 * the text as it is, cut after 75 tokens. A plain prompt of up to 75 tokens gives the same ids and the same
 * conditioning either way.
 */
export class PromptEncoder {
  private embeddings: readonly TextualInversion[] = [];
  private findEmbedding: EmbeddingMatcher<PlacedEmbedding> | undefined;

  constructor(
    private readonly tokenizer: ClipTokenizer,
    private readonly textEncoder: TextEncoder,
    /** Fewer than MAX_PROMPT_CHUNKS when the U-Net was exported for a fixed context length. */
    private readonly maxChunks: number,
  ) {}

  /** Makes these embeddings usable by name (those trained for another text-encoder width are left out). */
  useEmbeddings(embeddings: readonly TextualInversion[]): void {
    if (embeddings === this.embeddings) return;
    this.embeddings = embeddings;
    this.findEmbedding = embeddingMatcher(embeddings, this.tokenizer, this.textEncoder.tokenVectorWidth);
  }

  /** `what` names the prompt in messages ("prompt", "negative prompt"). Throws PromptError. */
  tokenize(text: string, syntax: PromptSyntax, what: string): TokenizedPrompt {
    if (syntax === 'plain') {
      const tokens = this.tokenizer.encode(text);
      return { chunks: [{ tokens, multipliers: tokens.map(() => 1), embeddings: [] }], tokenCount: this.tokenizer.tokenize(text).length };
    }
    let parsed;
    try {
      parsed = parsePromptAttention(text);
    } catch (error) {
      throw new PromptError(`The ${what} has a malformed weight: ${(error as Error).message}.`);
    }
    const tokenized = chunkPrompt(parsed, this.tokenizer, this.findEmbedding);
    if (tokenized.chunks.length > this.maxChunks) {
      const limit = this.maxChunks * CHUNK_LENGTH;
      const chunks = this.maxChunks === 1 ? 'this model takes one chunk' : `${this.maxChunks} chunks of ${CHUNK_LENGTH}`;
      throw new PromptError(`The ${what} is ${tokenized.tokenCount} tokens long (${tokenized.chunks.length} chunks); at most ${limit} fit (${chunks}). Shorten it.`);
    }
    return tokenized;
  }

  /** `[77·k, width]`: each chunk encoded and weighted, then joined. */
  async encode(prompt: TokenizedPrompt): Promise<TextEmbedding> {
    const encoded: Float32Array[] = [];
    let width = 0;
    for (const chunk of prompt.chunks) {
      const replacements = chunk.embeddings.map(({ offset, embedding }) => ({ offset, vectors: embedding.vectors }));
      const output = await this.textEncoder.encode(chunk.tokens, replacements);
      width = output.width;
      encoded.push(applyEmphasis(output.data, chunk.multipliers));
    }
    const data = encoded.length === 1 ? encoded[0] : concatAll(encoded);
    return { data, sequenceLength: data.length / width, width };
  }

  /**
   * The negative and the prompt conditioning, the shorter one padded with the empty prompt's chunk (A1111's
   * "pad prompt/negative prompt"), stacked `[negative, prompt]` for one batched U-Net call.
   */
  async encodePair(prompt: TokenizedPrompt, negative: TokenizedPrompt): Promise<TextEmbedding> {
    const [promptEmbedding, negativeEmbedding] = [await this.encode(prompt), await this.encode(negative)];
    let padded = { prompt: promptEmbedding.data, negative: negativeEmbedding.data };
    if (prompt.chunks.length !== negative.chunks.length) {
      const empty = await this.encode(this.tokenize('', 'a1111', 'empty prompt'));
      padded = padToSameLength(promptEmbedding.data, negativeEmbedding.data, empty.data);
    }
    const data = concatAll([padded.negative, padded.prompt]);
    return { data, sequenceLength: padded.prompt.length / promptEmbedding.width, width: promptEmbedding.width };
  }

  /** The names of the embeddings a tokenized prompt uses, in order of first use. */
  static embeddingsUsed(...prompts: TokenizedPrompt[]): string[] {
    const names = prompts.flatMap((prompt) => prompt.chunks.flatMap((chunk) => chunk.embeddings.map(({ embedding }) => embedding.name)));
    return [...new Set(names)];
  }
}

/**
 * A1111's lookup (`EmbeddingDatabase.find_embedding_at_position`): each embedding's name is tokenized, and at a
 * position the longest name whose ids follow there matches. Only embeddings with vectors of the text encoder's
 * width take part; none when the text encoder cannot take vectors.
 */
function embeddingMatcher(
  embeddings: readonly TextualInversion[],
  tokenizer: ClipTokenizer,
  width: number | undefined,
): EmbeddingMatcher<PlacedEmbedding> | undefined {
  const byFirstId = new Map<number, { ids: number[]; embedding: PlacedEmbedding }[]>();
  for (const embedding of embeddings) {
    const vectors = width === undefined ? undefined : embedding.vectors.get(width);
    const ids = tokenizer.tokenize(embedding.name);
    if (!vectors || ids.length === 0) continue;
    const candidates = byFirstId.get(ids[0]) ?? [];
    candidates.push({ ids, embedding: { name: embedding.name, vectorCount: embedding.vectorCount, vectors } });
    byFirstId.set(ids[0], candidates.sort((a, b) => b.ids.length - a.ids.length));
  }
  if (byFirstId.size === 0) return undefined;
  return (tokens, position) => {
    for (const { ids, embedding } of byFirstId.get(tokens[position]) ?? []) {
      if (ids.every((id, index) => tokens[position + index] === id)) return { embedding, tokenLength: ids.length };
    }
    return undefined;
  };
}

function concatAll(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((total, part) => total + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
