import { describe, expect, it } from 'vitest';
import { nearestSize } from '../src/jobs/options.ts';
import { InlineParameterError, extractInlineParameters } from '../src/prompt/inline-parameters.ts';

describe('extractInlineParameters', () => {
  it('takes every parameter from the end of the prompt', () => {
    expect(extractInlineParameters('a castle on a hill --ar 16:9 --no text, people --seed 42 --steps 30 --cfg 6.5')).toEqual({
      prompt: 'a castle on a hill',
      parameters: { aspectRatio: { width: 16, height: 9 }, no: 'text, people', seed: '42', steps: 30, guidance: 6.5 },
    });
  });

  it('accepts --aspect, the dash phones type for --, upper case and several --no', () => {
    expect(extractInlineParameters('fox —ar 2:3 --NO blur --no text').parameters).toEqual({ aspectRatio: { width: 2, height: 3 }, no: 'blur, text' });
    expect(extractInlineParameters('fox --aspect 1:1').parameters).toEqual({ aspectRatio: { width: 1, height: 1 } });
  });

  it('leaves a prompt without parameters, and dashes inside words, alone', () => {
    for (const prompt of ['a well-lit room', 'a--b', 'an arrow -- pointing', '(masterpiece:1.2), 8k --v6']) {
      expect(extractInlineParameters(prompt)).toEqual({ prompt, parameters: {} });
    }
  });

  it.each([
    ['fox --ar 16-9', '--ar must look like 16:9, whole numbers from 1 to 100 (got "16-9").'],
    ['fox --ar 0:1', '--ar must look like 16:9, whole numbers from 1 to 100 (got "0:1").'],
    ['fox --seed -1', '--seed must be a whole number (got "-1").'],
    ['fox --steps 2.5', '--steps must be a whole number (got "2.5").'],
    ['fox --cfg high', '--cfg must be a number such as 7.5 (got "high").'],
    ['fox --seed 1 --seed 2', '--seed is given twice.'],
    ['fox --no', '--no needs a value (supported: --ar W:H, --no <text>, --seed N, --steps N, --cfg X).'],
    ['fox --v 6', '--v is not a parameter this bot knows (supported: --ar W:H, --no <text>, --seed N, --steps N, --cfg X).'],
  ])('refuses %j', (prompt, message) => {
    expect(() => extractInlineParameters(prompt)).toThrow(new InlineParameterError(message));
  });
});

describe('nearestSize', () => {
  const sizes = [
    { width: 512, height: 512 },
    { width: 768, height: 512 },
    { width: 640, height: 384 },
    { width: 512, height: 768 },
  ];

  it('picks the offered size of the nearest shape', () => {
    expect(nearestSize(sizes, { width: 16, height: 9 })).toEqual({ width: 640, height: 384 });
    expect(nearestSize(sizes, { width: 3, height: 2 })).toEqual({ width: 768, height: 512 });
    expect(nearestSize(sizes, { width: 9, height: 16 })).toEqual({ width: 512, height: 768 });
    expect(nearestSize(sizes, { width: 1, height: 1 })).toEqual({ width: 512, height: 512 });
    expect(nearestSize([], { width: 1, height: 1 })).toBeUndefined();
  });
});
