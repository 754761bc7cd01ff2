import { beforeAll, describe, expect, it } from 'vitest';
import { ClipTokenizer } from '../src/pipeline/tokenizer.ts';
import { tokenText } from '../src/prompt/byte-level.ts';
import { CUT_MARKER, formatTokenView, tokenSummary, viewTokens } from '../src/prompt/token-view.ts';
import { fixturePath, fixturesPresent, readFixtureJson } from './fixtures.ts';

interface FixturePrompt {
  row: number;
  category: string;
  text: string;
  ids_noftfy: number[];
  tokens_noftfy: string[];
  untruncated_len_noftfy: number;
}

interface ConditioningCase {
  id: string;
  prompt: string;
  prompt_chunks: { tokens: number[]; multipliers: number[] }[];
}

const prompts = fixturesPresent ? readFixtureJson<{ prompts: FixturePrompt[] }>('tokenizer', 'prompts.json').prompts : [];
const cases = fixturesPresent ? readFixtureJson<{ cases: ConditioningCase[] }>('prompts', 'conditioning', 'index.json').cases : [];

describe.runIf(fixturesPresent)("the token view against transformers' CLIPTokenizer (plain syntax)", () => {
  let tokenizer: ClipTokenizer;
  beforeAll(async () => {
    tokenizer = await ClipTokenizer.fromDirectory(fixturePath('tokenizer'));
  });

  it('has short, truncated and Unicode prompts among the references', () => {
    expect(prompts.some((p) => p.untruncated_len_noftfy <= 77)).toBe(true);
    expect(prompts.filter((p) => p.untruncated_len_noftfy > 77).length).toBeGreaterThanOrEqual(3);
    expect(prompts.filter((p) => /[^\x00-\x7f]/.test(p.text)).length).toBeGreaterThanOrEqual(20);
  });

  it.each(prompts.map((p) => [p.row, p.category, p]))('prompt %i (%s): ids, vocabulary entries and the cut', (_row, _category, prompt) => {
    const view = viewTokens(prompt.text, 'plain', tokenizer, 8);
    expect(view.chunks).toHaveLength(1);
    const [chunk] = view.chunks;
    const ids = [view.start.id, ...chunk.tokens.map((token) => token.id), view.end.id, ...new Array(chunk.padding).fill(view.pad.id)];
    expect(ids).toEqual(prompt.ids_noftfy);
    expect(chunk.tokens.map((token) => token.token)).toEqual(prompt.tokens_noftfy.slice(0, 75));
    expect(view.cut.map((token) => token.token)).toEqual(prompt.tokens_noftfy.slice(75));
    expect(view.cut).toHaveLength(Math.max(0, prompt.untruncated_len_noftfy - 77));

    const lines = formatTokenView(view).split('\n');
    const marker = lines.indexOf(CUT_MARKER);
    if (view.cut.length === 0) {
      expect(marker).toBe(-1);
    } else {
      // Right after the end token at position 76, then the tokens the model never sees.
      expect(lines[marker - 1]).toMatch(/^ 76  49407  <\|endoftext\|>$/);
      expect(lines.slice(marker + 1)).toHaveLength(view.cut.length);
      expect(lines[marker + 1]).toContain(` ${prompt.tokens_noftfy[75]}`);
    }
  });

  it('lists each token with its position, id and entry, and the padding on one line', () => {
    const prompt = prompts.find((p) => p.text === 'a dog wearing hat')!;
    const [, a, dog, wearing, hat] = prompt.ids_noftfy;
    expect(formatTokenView(viewTokens(prompt.text, 'plain', tokenizer, 8))).toBe(
      [
        '  0  49406  <|startoftext|>',
        `  1    ${a}  a</w>`,
        `  2   ${dog}  dog</w>`,
        `  3   ${wearing}  wearing</w>`,
        `  4   ${hat}  hat</w>`,
        '  5  49407  <|endoftext|>',
        '  …  49407  <|endoftext|>  ×71 padding',
      ].join('\n'),
    );
  });

  it('spells what byte-level entries stand for, where they are whole characters', () => {
    const view = viewTokens('café au lait a cat 🐱 猫', 'plain', tokenizer, 8);
    const spelled = Object.fromEntries(view.chunks[0].tokens.map((token) => [token.token, token.text]));
    expect(spelled['cafÃ©</w>']).toBe('café');
    expect(spelled['ðŁĲ±</w>']).toBe('🐱');
    expect(spelled['cat</w>']).toBeUndefined();
    // 猫 is three bytes in two entries: neither is a whole character.
    expect(spelled['ç']).toBeUndefined();
    expect(tokenText('Į')).toBeUndefined();
  });

  it('counts the tokens and says how many are cut', () => {
    const long = prompts.find((p) => p.untruncated_len_noftfy === 103)!;
    expect(tokenSummary(viewTokens(long.text, 'plain', tokenizer, 8))).toBe('101 tokens · plain text (diffusers) · the model reads the first 75: 26 cut off');
    expect(tokenSummary(viewTokens('a dog wearing hat', 'plain', tokenizer, 8))).toBe('4 tokens of 75 · plain text (diffusers)');
  });
});

describe.runIf(fixturesPresent)("the token view against AUTOMATIC1111's chunks (its syntax)", () => {
  let tokenizer: ClipTokenizer;
  beforeAll(async () => {
    tokenizer = await ClipTokenizer.fromDirectory(fixturePath('models', 'tiny-sd15', 'tokenizer'));
  });

  it.each(cases.map((c) => [c.id, c]))('%s: each chunk’s ids and weights', (_id, testCase) => {
    const view = viewTokens(testCase.prompt, 'a1111', tokenizer, 8);
    expect(view.chunks).toHaveLength(testCase.prompt_chunks.length);
    view.chunks.forEach((chunk, index) => {
      const expected = testCase.prompt_chunks[index];
      const length = chunk.tokens.length;
      expect([view.start.id, ...chunk.tokens.map((token) => token.id), view.end.id]).toEqual(expected.tokens.slice(0, length + 2));
      expect(expected.tokens.slice(length + 2).every((id) => id === view.pad.id)).toBe(true);
      expect(chunk.tokens.map((token) => token.weight)).toEqual(expected.multipliers.slice(1, length + 1));
    });
  });

  it('shows a BREAK between the chunks it separates, and each weight', () => {
    const text = cases.find((c) => c.id === 'c07_break')!.prompt;
    const lines = formatTokenView(viewTokens(text, 'a1111', tokenizer, 8)).split('\n');
    expect(lines[0]).toBe('chunk 1 · 4/75 tokens · ends at BREAK');
    const breakLine = lines.indexOf('BREAK');
    expect(lines[breakLine - 1]).toMatch(/×71 padding$/);
    expect(lines[breakLine + 1]).toMatch(/^chunk 2 · \d+\/75 tokens · ends with the prompt$/);
    expect(lines.find((line) => line.includes(' red</w>'))).toMatch(/×1\.4$/);
  });

  it('says when the model cannot take the prompt, as the pipeline would', () => {
    const view = viewTokens('1'.repeat(700), 'a1111', tokenizer, 8);
    expect(view.chunks).toHaveLength(10);
    expect(view.problem).toBe('The prompt is 700 tokens long (10 chunks); at most 600 fit (8 chunks of 75). Shorten it.');
    expect(viewTokens('a dog', 'a1111', tokenizer, 1).problem).toBeUndefined();
    expect(viewTokens('1'.repeat(76), 'a1111', tokenizer, 1).problem).toMatch(/this model takes one chunk/);
    expect(viewTokens('a (dog:1.2.3)', 'a1111', tokenizer, 8).problem).toMatch(/^The prompt has a malformed weight/);
  });
});
