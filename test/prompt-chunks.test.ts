import { beforeAll, describe, expect, it } from 'vitest';
import { parsePromptAttention } from '../src/prompt/attention-parser.ts';
import { chunkPrompt, type ChunkEmbedding } from '../src/prompt/chunker.ts';
import { applyEmphasis, padToSameLength } from '../src/prompt/emphasis.ts';
import { ClipTokenizer } from '../src/pipeline/tokenizer.ts';
import { fixturePath, fixturesPresent, maxAbsDiff, readF32, readFixtureJson } from './fixtures.ts';

interface FixtureChunk {
  tokens: number[];
  multipliers: number[];
}

interface ConditioningCase {
  id: string;
  prompt: string;
  negative_prompt: string;
  parsed: { prompt: [string, number][]; negative: [string, number][] };
  prompt_chunks: FixtureChunk[];
  negative_chunks: FixtureChunk[];
  token_count: { prompt: number; negative: number };
  arrays: Record<string, { file: string; shape: number[] }>;
}

const index = fixturesPresent ? readFixtureJson<{ cases: ConditioningCase[] }>('prompts', 'conditioning', 'index.json') : { cases: [] };
const cases = index.cases;
const sides = ['prompt', 'negative'] as const;
const textOf = (testCase: ConditioningCase, side: (typeof sides)[number]) => (side === 'prompt' ? testCase.prompt : testCase.negative_prompt);
const array = (testCase: ConditioningCase, name: string) => readF32('prompts', testCase.arrays[name].file);
const TOLERANCE = 1e-5;

describe.runIf(fixturesPresent)("prompt chunks and weighting against AUTOMATIC1111's conditioning", () => {
  let tokenizer: ClipTokenizer;
  beforeAll(async () => {
    tokenizer = await ClipTokenizer.fromDirectory(fixturePath('models', 'tiny-sd15', 'tokenizer'));
  });

  it('has the fixture cases, long, BREAK and comma back-off among them', () => {
    expect(cases.length).toBeGreaterThanOrEqual(13);
    expect(cases.some((c) => c.prompt_chunks.length > 1)).toBe(true);
  });

  describe.each(cases.map((c) => [c.id, c]))('%s', (_id, testCase) => {
    it.each(sides)('%s: parsed, chunk ids, multipliers and token count equal A1111', (side) => {
      const parsed = parsePromptAttention(textOf(testCase, side));
      expect(parsed.map(({ text, weight }) => [text, weight])).toEqual(testCase.parsed[side]);
      const { chunks, tokenCount } = chunkPrompt(parsed, tokenizer);
      expect(chunks.map(({ tokens, multipliers }) => ({ tokens, multipliers }))).toEqual(testCase[`${side}_chunks`]);
      expect(tokenCount).toBe(testCase.token_count[side]);
    });

    it.each(sides)('%s: the weighted conditioning from the unweighted one is within 1e-5', (side) => {
      const unweighted = array(testCase, `${side}_unweighted`);
      const expected = array(testCase, `${side}_embeds`);
      const chunks = testCase[`${side}_chunks`];
      const chunkSize = unweighted.length / chunks.length;
      const weighted = new Float32Array(unweighted.length);
      chunks.forEach((chunk, k) => weighted.set(applyEmphasis(unweighted.slice(k * chunkSize, (k + 1) * chunkSize), chunk.multipliers), k * chunkSize));
      expect(maxAbsDiff(weighted, expected)).toBeLessThan(TOLERANCE);
    });

    it('prompt and negative padded to the same chunks with the empty prompt equal A1111', () => {
      const emptyChunk = array(cases.find((c) => c.prompt === '')!, 'prompt_embeds');
      const padded = padToSameLength(array(testCase, 'prompt_embeds'), array(testCase, 'negative_embeds'), emptyChunk);
      expect(padded.prompt).toEqual(array(testCase, 'prompt_embeds_padded'));
      expect(padded.negative).toEqual(array(testCase, 'negative_embeds_padded'));
    });
  });

  it('weighting moves the conditioning far beyond the tolerance (the check can fail)', () => {
    const weightedCase = cases.find((c) => c.prompt_chunks.some((chunk) => chunk.multipliers.some((m) => m !== 1)))!;
    expect(maxAbsDiff(array(weightedCase, 'prompt_unweighted'), array(weightedCase, 'prompt_embeds'))).toBeGreaterThan(100 * TOLERANCE);
  });
});

describe('chunkPrompt', () => {
  // A tokenizer where every word is one token: its id is the word's number, "," is 267.
  const words: ChunkTokenizerLike = {
    ids: { bos: 49406, eos: 49407, pad: 49407 },
    commaTokenId: 267,
    tokenize: (text) => text.split(/\s+/).filter(Boolean).map((word) => (word === ',' ? 267 : Number(word))),
  };
  type ChunkTokenizerLike = Parameters<typeof chunkPrompt>[1];
  const numbers = (from: number, count: number) => Array.from({ length: count }, (_, i) => String(from + i)).join(' ');

  it('pads with the model pad token after the first end token (SD 2.x)', () => {
    const { chunks } = chunkPrompt(parsePromptAttention('1 2'), { ...words, ids: { ...words.ids, pad: 0 } });
    expect(chunks[0].tokens.slice(0, 5)).toEqual([49406, 1, 2, 49407, 0]);
    expect(chunks[0].tokens).toHaveLength(77);
    expect(chunks[0].tokens.at(-1)).toBe(0);
  });

  it('places an embedding as placeholder ids with the weight of its text, whole in one chunk', () => {
    const embedding: ChunkEmbedding = { name: 'style', vectorCount: 3 };
    const find = (tokens: readonly number[], position: number) => (tokens[position] === 999 ? { embedding, tokenLength: 1 } : undefined);
    const { chunks, tokenCount } = chunkPrompt(parsePromptAttention(`${numbers(1, 73)} (999:1.5)`), words, find);
    expect(chunks).toHaveLength(2);
    expect(chunks[0].embeddings).toEqual([]);
    expect(chunks[1].tokens.slice(0, 5)).toEqual([49406, 0, 0, 0, 49407]);
    expect(chunks[1].multipliers.slice(0, 5)).toEqual([1, 1.5, 1.5, 1.5, 1]);
    expect(chunks[1].embeddings).toEqual([{ offset: 1, embedding }]);
    expect(tokenCount).toBe(75 + 3);
  });

  it('moves an embedding with its placeholders when the comma back-off moves them', () => {
    const embedding: ChunkEmbedding = { name: 'style', vectorCount: 2 };
    const find = (tokens: readonly number[], position: number) => (tokens[position] === 999 ? { embedding, tokenLength: 1 } : undefined);
    const { chunks } = chunkPrompt(parsePromptAttention(`${numbers(1, 70)} , 999 71 72 73`), words, find);
    expect(chunks).toHaveLength(2);
    expect(chunks[0].tokens[71]).toBe(267);
    expect(chunks[0].tokens[72]).toBe(49407);
    expect(chunks[0].embeddings).toEqual([]);
    expect(chunks[1].tokens.slice(0, 7)).toEqual([49406, 0, 0, 71, 72, 73, 49407]);
    expect(chunks[1].embeddings).toEqual([{ offset: 1, embedding }]);
  });
});
