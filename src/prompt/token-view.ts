import { PromptSyntaxError } from './attention-parser.ts';
import { tokenText } from './byte-level.ts';
import { CHUNK_LENGTH, embeddingMatcher, type ChunkEmbedding, type ChunkEnding } from './chunker.ts';
import { promptLengthProblem, tokenizePrompt, type PromptSyntax, type PromptTokenizer } from './prompt-tokens.ts';

/** What the token view needs of a tokenizer: reading prompts, and each id's vocabulary entry. */
export interface ViewTokenizer extends PromptTokenizer {
  tokenOf(id: number): string | undefined;
}

export interface ViewToken {
  id: number;
  /** The vocabulary entry, e.g. `dog</w>` (`</w>` ends a word). */
  token: string;
  /** The text it spells when that reads differently from the entry (`é` for `Ã©`); absent for plain ASCII or partial characters. */
  text?: string;
  weight: number;
  /** A textual-inversion embedding's vector (1-based, of `vectors`) in this position instead of a token's: `token` is its name. */
  embedding?: { vector: number; vectors: number };
}

export interface ViewChunk {
  /** The prompt's tokens in the chunk, without the start and end tokens. */
  tokens: ViewToken[];
  ending: ChunkEnding;
  /** The padding ids after the end token, up to 77. */
  padding: number;
}

/** A prompt as CLIP sees it: what `/tokens` and `npm run tokens` show. */
export interface TokenView {
  syntax: PromptSyntax;
  chunks: ViewChunk[];
  /** The start, end and padding tokens. */
  start: ViewToken;
  end: ViewToken;
  pad: ViewToken;
  /** The plain syntax's tokens beyond the first 75, which the model never sees. */
  cut: ViewToken[];
  maxChunks: number;
  /** Why the model refuses the prompt (too long, a malformed weight), in words for the user. */
  problem?: string;
  /** The embeddings the prompt uses, in order of first use. */
  embeddings: ChunkEmbedding[];
}

/**
 * Reads a prompt the way the pipeline will (same parser, chunker, embeddings and limits), keeping each token's entry
 * and weight. `embeddings`: those the model can use (see embeddingsForContext); each takes as many positions as it
 * has vectors.
 */
export function viewTokens(text: string, syntax: PromptSyntax, tokenizer: ViewTokenizer, maxChunks: number, embeddings: readonly ChunkEmbedding[] = []): TokenView {
  const token = (id: number, weight = 1): ViewToken => {
    const entry = tokenizer.tokenOf(id) ?? `<id ${id}>`;
    const spelled = tokenText(entry);
    const plain = entry.replace(/<\/w>$/, '');
    return { id, token: entry, ...(spelled !== undefined && spelled !== plain ? { text: spelled } : {}), weight };
  };
  const special = { start: token(tokenizer.ids.bos), end: token(tokenizer.ids.eos), pad: token(tokenizer.ids.pad) };
  let tokenized;
  try {
    tokenized = tokenizePrompt(text, syntax, tokenizer, embeddingMatcher(embeddings, tokenizer));
  } catch (error) {
    if (!(error instanceof PromptSyntaxError)) throw error;
    return { syntax, chunks: [], ...special, cut: [], maxChunks, problem: `The prompt has a malformed weight: ${error.message}.`, embeddings: [] };
  }
  const chunks = tokenized.chunks.map((chunk) => ({
    tokens: chunk.tokens.slice(1, 1 + chunk.length).map((id, index) => {
      const position = 1 + index;
      const placed = chunk.embeddings.find(({ offset, embedding }) => position >= offset && position < offset + embedding.vectorCount);
      if (!placed) return token(id, chunk.multipliers[position]);
      const { name, vectorCount } = placed.embedding;
      return { id, token: name, weight: chunk.multipliers[position], embedding: { vector: position - placed.offset + 1, vectors: vectorCount } };
    }),
    ending: chunk.ending,
    padding: tokenizer.maxLength - chunk.length - 2,
  }));
  const used = [...new Map(tokenized.chunks.flatMap((chunk) => chunk.embeddings.map(({ embedding }) => [embedding.name, embedding] as const))).values()];
  const problem = promptLengthProblem(tokenized, maxChunks, 'prompt');
  return { syntax, chunks, ...special, cut: tokenized.cut.map((id) => token(id)), maxChunks, ...(problem ? { problem } : {}), embeddings: used };
}

const SYNTAX_NAMES: Record<PromptSyntax, string> = { a1111: 'AUTOMATIC1111 syntax', plain: 'plain text (diffusers)' };

/** The counts in one line, e.g. "12 tokens of 75 · AUTOMATIC1111 syntax" (BREAK's padding not counted, unlike A1111's counter). */
export function tokenSummary(view: TokenView): string {
  const count = view.chunks.reduce((total, chunk) => total + chunk.tokens.length, view.cut.length);
  const tokens = `${count} token${count === 1 ? '' : 's'}`;
  const syntax = SYNTAX_NAMES[view.syntax] + embeddingsNote(view.embeddings);
  if (view.problem) return `${tokens} · ${syntax} · ${view.problem}`;
  if (view.cut.length > 0) return `${tokens} · ${syntax} · the model reads the first ${CHUNK_LENGTH}: ${view.cut.length} cut off`;
  if (view.chunks.length <= 1) return `${tokens} of ${CHUNK_LENGTH} · ${syntax}`;
  return `${tokens} in ${view.chunks.length} chunks of ${CHUNK_LENGTH} (at most ${view.maxChunks}) · ${syntax}`;
}

/** ", with the embedding easynegative (8 vectors)": what takes more than one position for a word. */
function embeddingsNote(embeddings: readonly ChunkEmbedding[]): string {
  if (embeddings.length === 0) return '';
  const listed = embeddings.map(({ name, vectorCount }) => `${name} (${vectorCount} vector${vectorCount === 1 ? '' : 's'})`).join(', ');
  return ` · embedding${embeddings.length === 1 ? '' : 's'} ${listed}`;
}

const ENDINGS: Record<ChunkEnding, string> = {
  break: 'ends at BREAK',
  full: 'full',
  comma: 'ends after a comma near its end; the rest goes on',
  end: 'ends with the prompt',
};

/** The marker line where the plain syntax cuts the prompt. */
export const CUT_MARKER = `✂ cut: the model never sees the tokens below`;

/**
 * One line per token: its position among the 77 ids, its id, its vocabulary entry (and the text it spells when that
 * differs; an embedding's name and which of its vectors), and its weight when not 1. Chunks are headed with their count and why they end; the padding is one line.
 */
export function formatTokenView(view: TokenView): string {
  const lines: string[] = [];
  const row = (position: number | string, token: ViewToken, note = '') => {
    const spelled = token.text === undefined ? '' : ` "${token.text}"`;
    const weight = token.weight === 1 ? '' : `  ×${formatWeight(token.weight)}`;
    // An embedding's vectors go in place of token embeddings: no token id of their own.
    const [id, entry] = token.embedding ? ['—', `${token.token} (embedding, vector ${token.embedding.vector} of ${token.embedding.vectors})`] : [String(token.id), token.token];
    lines.push(`${String(position).padStart(3)}  ${id.padStart(5)}  ${entry}${spelled}${weight}${note}`);
  };
  view.chunks.forEach((chunk, index) => {
    if (view.chunks.length > 1) {
      if (index > 0 && view.chunks[index - 1].ending === 'break') lines.push('BREAK');
      lines.push(`chunk ${index + 1} · ${chunk.tokens.length}/${CHUNK_LENGTH} tokens · ${ENDINGS[chunk.ending]}`);
    }
    row(0, view.start);
    chunk.tokens.forEach((token, position) => row(position + 1, token));
    row(chunk.tokens.length + 1, view.end);
    if (chunk.padding > 0) row('…', view.pad, `  ×${chunk.padding} padding`);
  });
  if (view.cut.length > 0) {
    lines.push(CUT_MARKER);
    view.cut.forEach((token, index) => row(CHUNK_LENGTH + 1 + index, token));
  }
  return lines.join('\n');
}

function formatWeight(weight: number): string {
  return String(Number(weight.toFixed(3)));
}
