/**
 * AUTOMATIC1111's prompt attention syntax (modules/prompt_parser.py, parse_prompt_attention), with its quirks:
 *
 *   (text)      weight ×1.1          [text]      weight ÷1.1
 *   (text:1.3)  weight ×1.3          \( \) \[ \] \\   the character itself
 *   BREAK       starts a new 75-token chunk (a BREAK inside brackets is the word "break", weighted)
 *
 * Unbalanced brackets are closed at the end; a `)`, `]` or `:` without its opener is plain text.
 * `[from:to:when]` (prompt editing) and `[a|b]` (alternation) are not interpreted: they stay text, weighted ÷1.1.
 */

/** One run of text and its weight; `{ text: 'BREAK', weight: -1 }` marks a BREAK. */
export interface WeightedText {
  text: string;
  weight: number;
}

export const BREAK_WEIGHT = -1;

/** A weight such as `(a:1.2.3)` that is no number: AUTOMATIC1111 fails the generation on it, and so do we. */
export class PromptSyntaxError extends Error {
  override name = 'PromptSyntaxError';
}

const ROUND_MULTIPLIER = 1.1;
const SQUARE_MULTIPLIER = 1 / 1.1;

// Python's `\d` and `\w` are Unicode-aware for str patterns, and its `\s` follows str.isspace(): written out
// here so that JavaScript matches the same characters.
const PY_SPACE = String.raw`[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]`;
const PY_WORD = String.raw`[\p{L}\p{N}_]`;

// The alternatives in A1111's order: escapes, a lone backslash, openers, `:weight)`, closers, a text run, a lone colon.
const ATTENTION_TOKEN = new RegExp(
  String.raw`\\\(|\\\)|\\\[|\\\]|\\\\|\\|\(|\[|:${PY_SPACE}*([+-]?[.\p{Nd}]+)${PY_SPACE}*\)|\)|\]|[^\\()[\]:]+|:`,
  'gu',
);
// `\s*\bBREAK\b\s*`: B and K are word characters, so the word boundaries are "no word character beside".
const BREAK_SEPARATOR = new RegExp(String.raw`${PY_SPACE}*(?<!${PY_WORD})BREAK(?!${PY_WORD})${PY_SPACE}*`, 'u');

export function parsePromptAttention(prompt: string): WeightedText[] {
  const result: WeightedText[] = [];
  const roundOpen: number[] = [];
  const squareOpen: number[] = [];
  const multiplyFrom = (start: number, multiplier: number) => {
    for (let index = start; index < result.length; index++) result[index].weight *= multiplier;
  };

  for (const match of prompt.matchAll(ATTENTION_TOKEN)) {
    const [token, weight] = match;
    if (token.startsWith('\\')) result.push({ text: token.slice(1), weight: 1 });
    else if (token === '(') roundOpen.push(result.length);
    else if (token === '[') squareOpen.push(result.length);
    else if (weight !== undefined && roundOpen.length > 0) multiplyFrom(roundOpen.pop()!, parsePythonFloat(weight));
    else if (token === ')' && roundOpen.length > 0) multiplyFrom(roundOpen.pop()!, ROUND_MULTIPLIER);
    else if (token === ']' && squareOpen.length > 0) multiplyFrom(squareOpen.pop()!, SQUARE_MULTIPLIER);
    else {
      token.split(BREAK_SEPARATOR).forEach((part, index) => {
        if (index > 0) result.push({ text: 'BREAK', weight: BREAK_WEIGHT });
        result.push({ text: part, weight: 1 });
      });
    }
  }
  for (const start of roundOpen) multiplyFrom(start, ROUND_MULTIPLIER);
  for (const start of squareOpen) multiplyFrom(start, SQUARE_MULTIPLIER);

  if (result.length === 0) return [{ text: '', weight: 1 }];
  for (let index = 0; index + 1 < result.length; ) {
    if (result[index].weight === result[index + 1].weight) {
      result[index].text += result[index + 1].text;
      result.splice(index + 1, 1);
    } else {
      index++;
    }
  }
  return result;
}

/** True for a parsed entry that starts a new chunk: only an unweighted BREAK (A1111 checks weight == -1). */
export function isBreak(entry: WeightedText): boolean {
  return entry.text === 'BREAK' && entry.weight === BREAK_WEIGHT;
}

/** Python's float() on what the weight pattern matched: digits of any script, at most one point. */
function parsePythonFloat(text: string): number {
  const ascii = text.replace(/\p{Nd}/gu, (digit) => String(unicodeDigitValue(digit)));
  const value = /^[+-]?(\d+\.?\d*|\.\d+)$/.test(ascii) ? Number(ascii) : Number.NaN;
  if (Number.isNaN(value)) throw new PromptSyntaxError(`"${text}" in "(…:${text})" is not a weight; write a number such as 1.2`);
  return value;
}

/** Unicode puts each script's decimal digits 0-9 in a run of consecutive code points, so the offset in the run is the value. */
function unicodeDigitValue(digit: string): number {
  let codePoint = digit.codePointAt(0)!;
  let offset = 0;
  while (/\p{Nd}/u.test(String.fromCodePoint(codePoint - 1))) {
    codePoint--;
    offset++;
  }
  return offset % 10;
}
