import { AttachmentBuilder } from 'discord.js';
import { formatTokenView, tokenSummary, type TokenView } from '../prompt/token-view.ts';
import { escapeMarkdown } from './markdown.ts';

const MESSAGE_LENGTH_LIMIT = 2000;
export const TOKEN_LIST_FILE = 'tokens.txt';

export interface TokenReply {
  content: string;
  files: AttachmentBuilder[];
}

/**
 * The /tokens answer: the model and the counts, then the token list in a code block. A list too long for one
 * message is attached whole as tokens.txt and the message shows as many of its lines as fit.
 */
export function tokenReply(view: TokenView, modelName: string, inlineParameters: boolean): TokenReply {
  const header = [
    `**${escapeMarkdown(modelName)}** · ${escapeMarkdown(tokenSummary(view))}`,
    ...(inlineParameters ? ['(the `--` parameters at the end are not part of the prompt the model reads)'] : []),
  ].join('\n');
  const listing = formatTokenView(view);
  if (listing === '') return { content: header, files: [] };
  const whole = `${header}\n${codeBlock(listing)}`;
  if ([...whole].length <= MESSAGE_LENGTH_LIMIT) return { content: whole, files: [] };

  const note = `… the whole list is in ${TOKEN_LIST_FILE}`;
  const room = MESSAGE_LENGTH_LIMIT - [...header].length - [...note].length - 20;
  const shown: string[] = [];
  let used = 0;
  for (const line of listing.split('\n')) {
    const length = [...line].length + 1;
    if (used + length > room) break;
    shown.push(line);
    used += length;
  }
  return {
    content: `${header}\n${codeBlock(shown.join('\n'))}\n${note}`,
    files: [new AttachmentBuilder(Buffer.from(`${tokenSummary(view)}\n\n${listing}\n`, 'utf8'), { name: TOKEN_LIST_FILE })],
  };
}

/** A code block nothing in the list can close early (a vocabulary entry may hold backticks). */
function codeBlock(text: string): string {
  return `\`\`\`\n${text.replace(/`/g, '`\u200b')}\n\`\`\``;
}
