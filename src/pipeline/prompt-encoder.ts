import type { TextualInversion } from '../models/embeddings.ts';
import { PromptSyntaxError } from '../prompt/attention-parser.ts';
import { embeddingMatcher, type ChunkEmbedding, type EmbeddingMatcher, type PromptChunk } from '../prompt/chunker.ts';
import { applyEmphasis, padToSameLength } from '../prompt/emphasis.ts';
import { promptLengthProblem, tokenizePrompt, type TokenizedPrompt as PromptTokens } from '../prompt/prompt-tokens.ts';
import type { TextEmbedding, TextEncoder } from './text-encoder.ts';
import type { ClipTokenizer, SpecialTokenIds } from './tokenizer.ts';
import { RequestError, type PromptSyntax } from './types.ts';

/** A prompt that cannot be encoded as written (too long, a malformed weight); the message is for the user. */
export class PromptError extends RequestError {
  override name = 'PromptError';
}

/** An embedding as the chunker places it, with the vectors for each of this model's text encoders. */
interface PlacedEmbedding extends ChunkEmbedding {
  vectors: Float32Array[];
}

/** A chunk with the 77 ids each text encoder gets (each its own padding; in the plain syntax its own tokenizer's ids). */
interface EncoderChunk extends PromptChunk<PlacedEmbedding> {
  ids: number[][];
}

/** A prompt cut into 77-id chunks, before the text encoders run. */
export interface TokenizedPrompt {
  chunks: EncoderChunk[];
  tokenCount: number;
}

/**
 * One of the model's text encoders with its tokenizer: SD 1.x / 2.x have one; SDXL two, whose conditionings are
 * joined along the width and the last of which also gives the pooled embedding.
 */
export interface PromptEncoderPart {
  tokenizer: ClipTokenizer;
  textEncoder: TextEncoder;
}

/**
 * Turns prompts into the U-Net's conditioning. With the AUTOMATIC1111 syntax (the default) a prompt is parsed
 * for weights and BREAK, cut into chunks of 75 tokens, textual-inversion embeddings placed by name; each chunk
 * is encoded on its own, weighted, and the chunks are joined: `[77·k, width]`. The plain syntax is diffusers':
 * the text as it is, cut after 75 tokens. A plain prompt of up to 75 tokens gives the same ids and the same
 * conditioning either way. With two text encoders (SDXL) each chunk goes through both, as AUTOMATIC1111 does: the
 * chunks are cut with the first tokenizer, the second encoder gets the same ids with its own padding, each
 * encoder's output is weighted on its own, and the pooled embedding is the first chunk's, unweighted.
 */
export class PromptEncoder {
  private embeddings: readonly TextualInversion[] = [];
  private findEmbedding: EmbeddingMatcher<PlacedEmbedding> | undefined;
  private readonly tokenizer: ClipTokenizer;

  constructor(
    private readonly parts: readonly PromptEncoderPart[],
    /** ModelInfo.maxPromptChunks. */
    private readonly maxChunks: number,
  ) {
    this.tokenizer = parts[0].tokenizer;
  }

  /** Makes these embeddings usable by name (those without vectors of every text encoder's width are left out). */
  useEmbeddings(embeddings: readonly TextualInversion[]): void {
    if (embeddings === this.embeddings) return;
    this.embeddings = embeddings;
    this.findEmbedding = modelEmbeddingMatcher(embeddings, this.tokenizer, this.parts.map(({ textEncoder }) => textEncoder.tokenVectorWidth));
  }

  /** `what` names the prompt in messages ("prompt", "negative prompt"). Throws PromptError. */
  tokenize(text: string, syntax: PromptSyntax, what: string): TokenizedPrompt {
    let tokenized: PromptTokens<PlacedEmbedding>;
    try {
      tokenized = tokenizePrompt(text, syntax, this.tokenizer, this.findEmbedding);
    } catch (error) {
      if (error instanceof PromptSyntaxError) throw new PromptError(`The ${what} has a malformed weight: ${error.message}.`);
      throw error;
    }
    const problem = promptLengthProblem(tokenized, this.maxChunks, what);
    if (problem) throw new PromptError(problem);
    if (syntax === 'plain') {
      // diffusers tokenizes the plain text with each text encoder's own tokenizer.
      const [chunk] = tokenized.chunks;
      const ids = this.parts.map(({ tokenizer }, index) => (index === 0 ? chunk.tokens : tokenizer.encode(text)));
      return { chunks: [{ ...chunk, ids }], tokenCount: tokenized.tokenCount };
    }
    return { chunks: tokenized.chunks.map((chunk) => ({ ...chunk, ids: this.parts.map(({ tokenizer }) => withPadding(chunk.tokens, tokenizer.ids)) })), tokenCount: tokenized.tokenCount };
  }

  /** `[77·k, width]`: each chunk encoded and weighted, then joined (and the pooled embedding, when a text encoder gives one). */
  async encode(prompt: TokenizedPrompt): Promise<TextEmbedding> {
    const encoded: Float32Array[] = [];
    let width = 0;
    let pooled: Float32Array | undefined;
    for (const chunk of prompt.chunks) {
      const outputs: TextEmbedding[] = [];
      for (const [index, { textEncoder }] of this.parts.entries()) {
        const replacements = chunk.embeddings.map(({ offset, embedding }) => ({ offset, vectors: embedding.vectors[index] }));
        const output = await textEncoder.encode(chunk.ids[index], replacements);
        pooled ??= output.pooled;
        outputs.push({ ...output, data: applyEmphasis(output.data, chunk.multipliers) });
      }
      const joined = outputs.length === 1 ? outputs[0] : joinWidths(outputs);
      width = joined.width;
      encoded.push(joined.data);
    }
    const data = encoded.length === 1 ? encoded[0] : concatAll(encoded);
    return { data, sequenceLength: data.length / width, width, ...(pooled ? { pooled } : {}) };
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
    const pooled = promptEmbedding.pooled && negativeEmbedding.pooled ? concatAll([negativeEmbedding.pooled, promptEmbedding.pooled]) : undefined;
    return { data, sequenceLength: padded.prompt.length / promptEmbedding.width, width: promptEmbedding.width, ...(pooled ? { pooled } : {}) };
  }

  /** The names of the embeddings a tokenized prompt uses, in order of first use. */
  static embeddingsUsed(...prompts: TokenizedPrompt[]): string[] {
    const names = prompts.flatMap((prompt) => prompt.chunks.flatMap((chunk) => chunk.embeddings.map(({ embedding }) => embedding.name)));
    return [...new Set(names)];
  }
}

/**
 * Only embeddings of the model's family take part: for one text encoder those of its width, for SDXL's two those
 * with vectors for each (clip_l, clip_g) of their widths; none when a text encoder cannot take vectors.
 */
function modelEmbeddingMatcher(
  embeddings: readonly TextualInversion[],
  tokenizer: ClipTokenizer,
  widths: readonly (number | undefined)[],
): EmbeddingMatcher<PlacedEmbedding> | undefined {
  const usable = embeddings.flatMap((embedding) => {
    const vectors = vectorsFor(embedding, widths);
    return vectors ? [{ name: embedding.name, vectorCount: embedding.vectorCount, vectors }] : [];
  });
  return embeddingMatcher(usable, tokenizer);
}

/** An embedding's vectors for each text encoder (of these widths; undefined: takes none), or undefined when it is of another family. */
function vectorsFor(embedding: TextualInversion, widths: readonly (number | undefined)[]): Float32Array[] | undefined {
  const offered = widths.length === 1 ? (embedding.perTextEncoder ? [] : [embedding.vectors.get(widths[0] ?? 0)]) : (embedding.perTextEncoder ?? []);
  const vectors = widths.map((width, index) => (offered[index]?.length === (width ?? 0) * embedding.vectorCount ? offered[index] : undefined));
  return vectors.every((part) => part !== undefined) ? vectors : undefined;
}

/** A chunk's ids for a tokenizer whose padding differs from the end token (SDXL's second pads with "!"): padding after the first end token. */
function withPadding(tokens: readonly number[], { eos, pad }: SpecialTokenIds): number[] {
  const ids = [...tokens];
  const end = ids.indexOf(eos);
  if (end !== -1) ids.fill(pad, end + 1);
  return ids;
}

/** Text-encoder outputs of the same tokens side by side: `[tokens, w1]` and `[tokens, w2]` → `[tokens, w1 + w2]`. */
function joinWidths(outputs: readonly TextEmbedding[]): TextEmbedding {
  const { sequenceLength } = outputs[0];
  const width = outputs.reduce((total, output) => total + output.width, 0);
  const data = new Float32Array(sequenceLength * width);
  let column = 0;
  for (const output of outputs) {
    for (let token = 0; token < sequenceLength; token++) data.set(output.data.subarray(token * output.width, (token + 1) * output.width), token * width + column);
    column += output.width;
  }
  return { data, sequenceLength, width };
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
