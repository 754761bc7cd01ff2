/** Control characters (C0, DEL, C1) and the bidirectional overrides that can make a terminal show other text. */
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/gu;

/**
 * Text from a hub (file names, error details) made safe to print on one terminal line: each control character is
 * shown as an escape such as \x1b instead of being sent to the terminal, which would obey it.
 */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE, (character) => {
    const code = character.codePointAt(0)!;
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u{${code.toString(16)}}`;
  });
}
