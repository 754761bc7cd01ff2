import { isBreak, type WeightedText } from './attention-parser.ts';

/** A prompt's tokens beyond 75 go to further chunks of 75, each encoded on its own with start and end tokens. */
export const CHUNK_LENGTH = 75;
/** A1111's `comma_padding_backtrack`: a chunk may end early at a comma this close to its end. */
const COMMA_BACKTRACK = 20;

/** The tokenizer's part in chunking. */
export interface ChunkTokenizer {
  /** Token ids without start/end tokens, never cut. */
  tokenize(text: string): number[];
  readonly ids: { bos: number; eos: number; pad: number };
  readonly commaTokenId: number | undefined;
}

/** What the chunker needs to know of a textual-inversion embedding. */
export interface ChunkEmbedding {
  name: string;
  /** How many token positions its vectors take. */
  vectorCount: number;
}

/** Finds the embedding whose name's tokens start at `position` (the longest match), if any. */
export type EmbeddingMatcher<E extends ChunkEmbedding> = (tokens: readonly number[], position: number) => { embedding: E; tokenLength: number } | undefined;

/**
 * A1111's lookup (`EmbeddingDatabase.find_embedding_at_position`): each embedding's name is tokenized, and at a
 * position the longest name whose ids follow there matches. Undefined when there are no embeddings.
 */
export function embeddingMatcher<E extends ChunkEmbedding>(embeddings: readonly E[], tokenizer: Pick<ChunkTokenizer, 'tokenize'>): EmbeddingMatcher<E> | undefined {
  const byFirstId = new Map<number, { ids: number[]; embedding: E }[]>();
  for (const embedding of embeddings) {
    const ids = tokenizer.tokenize(embedding.name);
    if (ids.length === 0) continue;
    const candidates = byFirstId.get(ids[0]) ?? [];
    candidates.push({ ids, embedding });
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

/** An embedding's vectors replace the token embeddings at `offset` (an index into the chunk's 77 ids) onwards. */
export interface EmbeddingPlacement<E extends ChunkEmbedding> {
  offset: number;
  embedding: E;
}

/** 77 token ids (start, 75 tokens, end; padded) with one weight each: AUTOMATIC1111's PromptChunk. */
export interface PromptChunk<E extends ChunkEmbedding = ChunkEmbedding> {
  tokens: number[];
  multipliers: number[];
  embeddings: EmbeddingPlacement<E>[];
  /** How many of `tokens` are the prompt's (after the start token; the rest is end token and padding). */
  length: number;
  /** Why the chunk ends: a BREAK, 75 tokens, a comma near its end (the tokens after it went on), or the prompt's end. */
  ending: ChunkEnding;
}

export type ChunkEnding = 'break' | 'full' | 'comma' | 'end';

export interface ChunkedPrompt<E extends ChunkEmbedding = ChunkEmbedding> {
  chunks: PromptChunk<E>[];
  /** A1111's token count: 75 for every chunk but the last, whose own tokens count. */
  tokenCount: number;
}

/**
 * AUTOMATIC1111's `tokenize_line`: each parsed text is tokenized on its own, its tokens carry its weight, and
 * they fill chunks of 75. A BREAK ends the chunk. When a chunk is full and a comma came within its last 20
 * tokens, the chunk ends after that comma and the tokens behind it start the next one. An embedding's name
 * becomes as many placeholder ids (0) as it has vectors, kept within one chunk.
 *
 * One deliberate difference: when that comma back-off moves an embedding's placeholders to the next chunk,
 * A1111 leaves the embedding's position behind in the previous chunk (its vectors then overwrite padding
 * there, and the moved placeholders stay the token "!"); here the embedding moves with its placeholders.
 */
export function chunkPrompt<E extends ChunkEmbedding>(
  parsed: readonly WeightedText[],
  tokenizer: ChunkTokenizer,
  findEmbedding?: EmbeddingMatcher<E>,
): ChunkedPrompt<E> {
  const { bos, eos, pad } = tokenizer.ids;
  const chunks: PromptChunk<E>[] = [];
  let tokens: number[] = [];
  let multipliers: number[] = [];
  let embeddings: EmbeddingPlacement<E>[] = [];
  let tokenCount = 0;
  let lastComma = -1;

  const emit = (ending: ChunkEnding) => {
    tokenCount += ending === 'end' ? tokens.length : CHUNK_LENGTH;
    const ids = [bos, ...tokens, ...new Array<number>(Math.max(0, CHUNK_LENGTH - tokens.length)).fill(eos), eos];
    // Models whose padding differs from the end token (SD 2.x pads with "!") get it after the first end token.
    if (pad !== eos) ids.fill(pad, ids.indexOf(eos) + 1);
    chunks.push({
      tokens: ids,
      multipliers: [1, ...multipliers, ...new Array<number>(Math.max(0, CHUNK_LENGTH - multipliers.length)).fill(1), 1],
      embeddings: embeddings.map((placed) => ({ ...placed, offset: placed.offset + 1 })),
      length: tokens.length,
      ending,
    });
    tokens = [];
    multipliers = [];
    embeddings = [];
    lastComma = -1;
  };

  const texts = parsed.map((entry) => tokenizer.tokenize(entry.text));
  parsed.forEach((entry, index) => {
    if (isBreak(entry)) {
      emit('break');
      return;
    }
    const segment = texts[index];
    for (let position = 0; position < segment.length; ) {
      const token = segment[position];
      if (token === tokenizer.commaTokenId) {
        lastComma = tokens.length;
      } else if (tokens.length === CHUNK_LENGTH && lastComma !== -1 && tokens.length - lastComma <= COMMA_BACKTRACK) {
        const cut = lastComma + 1;
        const moved = { tokens: tokens.slice(cut), multipliers: multipliers.slice(cut), embeddings: embeddings.filter((placed) => placed.offset >= cut) };
        tokens.length = cut;
        multipliers.length = cut;
        embeddings = embeddings.filter((placed) => placed.offset < cut);
        emit('comma');
        tokens = moved.tokens;
        multipliers = moved.multipliers;
        embeddings = moved.embeddings.map((placed) => ({ ...placed, offset: placed.offset - cut }));
      }
      if (tokens.length === CHUNK_LENGTH) emit('full');

      const match = findEmbedding?.(segment, position);
      if (!match) {
        tokens.push(token);
        multipliers.push(entry.weight);
        position++;
        continue;
      }
      const count = match.embedding.vectorCount;
      if (tokens.length + count > CHUNK_LENGTH) emit('full');
      embeddings.push({ offset: tokens.length, embedding: match.embedding });
      for (let vector = 0; vector < count; vector++) {
        tokens.push(0);
        multipliers.push(entry.weight);
      }
      position += match.tokenLength;
    }
  });
  if (tokens.length > 0 || chunks.length === 0) emit('end');
  return { chunks, tokenCount };
}
