// A server's banned words and phrases, matched the way a reader sees the text: case, full-width and other
// compatibility forms, and invisible characters between the letters do not hide a word.

/** Zero-width and other format characters (joiners, bidi marks, soft hyphen, word joiner), variation selectors and combining marks. */
const INVISIBLE = /[\p{Cf}\p{M}\u034f\u115f\u1160\u3164\uffa0]/gu;
/** Letters and digits; anything else (spaces, punctuation, `_`, prompt syntax such as `(` `:`) separates words. */
const WORD_CHARACTER = '[\\p{L}\\p{N}]';

/** The text as it reads: NFKC (full-width and compatibility forms to their plain letters), no invisible characters, lower case. */
export function readableForm(text: string): string {
  return text.normalize('NFKC').replace(INVISIBLE, '').normalize('NFKC').toLowerCase();
}

/** A word or phrase as a server lists it: its readable form with single spaces; empty when nothing visible is left. */
export function normalizeBannedWord(word: string): string {
  return readableForm(word).replace(/[^\p{L}\p{N}]+/gu, ' ').trim();
}

/** Finds banned words and phrases as whole words: "ass" matches "ass" and "ASS!" but not "class" or "assassin". */
export class BannedWords {
  private readonly pattern: RegExp | undefined;

  constructor(words: readonly string[]) {
    const phrases = words.map(normalizeBannedWord).filter(Boolean);
    if (phrases.length === 0) return;
    // A phrase's words may be separated by any run of non-letters, as "red  car", "red-car" and "red_car" are.
    const alternatives = phrases.map((phrase) => phrase.split(' ').map(escapeRegExp).join('[^\\p{L}\\p{N}]+'));
    this.pattern = new RegExp(`(?<!${WORD_CHARACTER})(?:${alternatives.join('|')})(?!${WORD_CHARACTER})`, 'u');
  }

  /** Whether any of the texts contains a banned word or phrase. */
  foundIn(...texts: (string | undefined)[]): boolean {
    const pattern = this.pattern;
    if (!pattern) return false;
    return texts.some((text) => text !== undefined && pattern.test(readableForm(text)));
  }
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
