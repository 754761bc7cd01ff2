import { parsePromptAttention } from './attention-parser.ts';
import { CHUNK_LENGTH, chunkPrompt, type ChunkEmbedding, type ChunkTokenizer, type EmbeddingMatcher, type PromptChunk } from './chunker.ts';

/**
 * How a prompt's text is read: `a1111` (the default) is AUTOMATIC1111's syntax — `(word:1.3)`, `[word]`, BREAK,
 * prompts beyond 75 tokens in chunks, textual-inversion embeddings by name; `plain` is diffusers' reading — the
 * text as it is, cut after 75 tokens.
 */
export type PromptSyntax = 'a1111' | 'plain';
export const PROMPT_SYNTAXES: readonly PromptSyntax[] = ['a1111', 'plain'];

/** The most chunks of 75 tokens a prompt may take: 600 tokens. */
export const MAX_PROMPT_CHUNKS = 8;

/** What reading a prompt needs of the tokenizer: chunking, and for the plain syntax where the text is cut. */
export interface PromptTokenizer extends ChunkTokenizer {
  /** Ids per sequence, start and end tokens included (77 for CLIP). */
  readonly maxLength: number;
}

/** A prompt as the text encoder gets it: chunks of 77 ids with their weights. */
export interface TokenizedPrompt<E extends ChunkEmbedding = ChunkEmbedding> {
  chunks: PromptChunk<E>[];
  /** The prompt's tokens, those cut off by the plain syntax included (AUTOMATIC1111's count with its syntax). */
  tokenCount: number;
  /** The plain syntax's tokens beyond the first 75, which the model never sees (none with AUTOMATIC1111's syntax). */
  cut: number[];
}

/**
 * Reads a prompt in either syntax. Throws the parser's PromptSyntaxError for a malformed weight; a prompt of more
 * chunks than a model takes is not refused here (see promptLengthProblem).
 */
export function tokenizePrompt<E extends ChunkEmbedding>(
  text: string,
  syntax: PromptSyntax,
  tokenizer: PromptTokenizer,
  findEmbedding?: EmbeddingMatcher<E>,
): TokenizedPrompt<E> {
  if (syntax === 'a1111') return { ...chunkPrompt(parsePromptAttention(text), tokenizer, findEmbedding), cut: [] };
  const { bos, eos, pad } = tokenizer.ids;
  const all = tokenizer.tokenize(text);
  const kept = all.slice(0, tokenizer.maxLength - 2);
  const tokens = [bos, ...kept, eos];
  while (tokens.length < tokenizer.maxLength) tokens.push(pad);
  const chunk: PromptChunk<E> = { tokens, multipliers: tokens.map(() => 1), embeddings: [], length: kept.length, ending: 'end' };
  return { chunks: [chunk], tokenCount: all.length, cut: all.slice(kept.length) };
}

/** Why a model cannot take this prompt (it needs more chunks than `maxChunks`), in words for the user; undefined when it can. */
export function promptLengthProblem(prompt: TokenizedPrompt, maxChunks: number, what: string): string | undefined {
  if (prompt.chunks.length <= maxChunks) return undefined;
  const limit = maxChunks * CHUNK_LENGTH;
  const chunks = maxChunks === 1 ? 'this model takes one chunk' : `${maxChunks} chunks of ${CHUNK_LENGTH}`;
  return `The ${what} is ${prompt.tokenCount} tokens long (${prompt.chunks.length} chunks); at most ${limit} fit (${chunks}). Shorten it.`;
}
