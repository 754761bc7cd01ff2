import { describe, expect, it } from 'vitest';
import { PromptSyntaxError, isBreak, parsePromptAttention } from '../src/prompt/attention-parser.ts';
import { fixturesPresent, readFixtureJson } from './fixtures.ts';

interface ParseCase {
  id: string;
  prompt: string;
  parsed: [string, number][] | null;
  error?: string;
}

const cases: ParseCase[] = fixturesPresent ? readFixtureJson<{ cases: ParseCase[] }>('prompts', 'parse.json').cases : [];

describe.runIf(fixturesPresent)("parsePromptAttention against AUTOMATIC1111's parse_prompt_attention", () => {
  it('has the fixture cases', () => {
    expect(cases.length).toBeGreaterThanOrEqual(46);
  });

  it.each(cases.filter((c) => c.parsed !== null).map((c) => [c.id, c.prompt, c]))('%s %j', (_id, _prompt, testCase) => {
    const parsed = parsePromptAttention(testCase.prompt).map(({ text, weight }) => [text, weight]);
    // Weights are the float64 products A1111 computes, compared exactly (same operations in the same order).
    expect(parsed).toEqual(testCase.parsed);
  });

  it.each(cases.filter((c) => c.parsed === null).map((c) => [c.id, c.prompt]))('%s %j fails as A1111 does', (_id, prompt) => {
    expect(() => parsePromptAttention(prompt)).toThrow(PromptSyntaxError);
  });
});

describe('parsePromptAttention beyond the fixtures', () => {
  it('fails on a malformed weight with a message that quotes it', () => {
    expect(() => parsePromptAttention('(a:1.2.3)')).toThrow(/"1\.2\.3"/);
    expect(() => parsePromptAttention('(a:.)')).toThrow(PromptSyntaxError);
  });

  it('reads weights written with digits of other scripts as Python does', () => {
    expect(parsePromptAttention('(a:١٫٥)')).toEqual([{ text: 'a:١٫٥', weight: 1.1 }]);
    expect(parsePromptAttention('(a:١.٥)')).toEqual([{ text: 'a', weight: 1.5 }]);
    expect(parsePromptAttention('(a:２)')).toEqual([{ text: 'a', weight: 2 }]);
  });

  it('sees BREAK only between non-word characters, Unicode letters included', () => {
    expect(parsePromptAttention('éBREAK b')).toEqual([{ text: 'éBREAK b', weight: 1 }]);
    expect(parsePromptAttention('a_BREAK b')).toEqual([{ text: 'a_BREAK b', weight: 1 }]);
    expect(parsePromptAttention('a,BREAK\u3000b').map(isBreak)).toEqual([false, true, false]);
  });

  it('keeps a weighted BREAK as text', () => {
    const parsed = parsePromptAttention('(a BREAK b:1.2)');
    expect(parsed.map(isBreak)).toEqual([false, false, false]);
    expect(parsed[1]).toEqual({ text: 'BREAK', weight: -1.2 });
  });
});
