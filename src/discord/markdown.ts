/** Characters Discord's Markdown reads anywhere in a line: emphasis, code, spoilers, quotes, mentions, "[text](url)" links. */
const INLINE_MARKUP = /[\\`*_~|<>[\]]/g;
/** ...and at the start of a line: headings and lists. */
const LINE_START_MARKUP = /^([ \t]*)([#+-])/gm;
const ESCAPED = /\\([\\`*_~|<>[\]#+-])/g;

/** User text shown as typed: nothing in it becomes formatting, a mention or a masked link. */
export function escapeMarkdown(text: string): string {
  return text.replace(INLINE_MARKUP, '\\$&').replace(LINE_START_MARKUP, '$1\\$2');
}

/** The exact inverse of escapeMarkdown. */
export function unescapeMarkdown(text: string): string {
  return text.replace(ESCAPED, '$1');
}
