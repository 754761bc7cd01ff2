import type { EmbeddingScan } from '../models/embeddings.ts';
import type { PromptSyntax } from '../pipeline/types.ts';

const MESSAGE_LIMIT = 2000;

/** The /embeddings reply: the embeddings by model family, then the files that could not be used and why. */
export function embeddingListText({ embeddings, skipped }: EmbeddingScan, syntax: PromptSyntax): string {
  const lines: string[] = [];
  if (embeddings.length === 0) {
    lines.push('No textual-inversion embeddings are installed. The bot operator adds `.safetensors` embeddings to its embeddings folder; a prompt then uses one by its name.');
  } else {
    lines.push('**Embeddings** — write a name in a prompt or negative prompt to use it (each works with its model family only):');
    const families = [...new Set(embeddings.map((embedding) => embedding.family))];
    for (const family of families) {
      const members = embeddings.filter((embedding) => embedding.family === family);
      lines.push(`**${family}**: ${members.map((embedding) => `\`${code(embedding.name)}\` (${plural(embedding.vectorCount, 'vector')})`).join(', ')}`);
    }
  }
  if (skipped.length > 0) {
    lines.push(`Not usable: ${skipped.map(({ file, reason }) => `\`${code(file)}\`: ${reason}`).join('; ')}`);
  }
  if (syntax === 'plain') lines.push('Prompt syntax is off on this bot, so these names are read as ordinary words.');
  return fit(lines.join('\n'));
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

/** Text safe inside a Markdown code span. */
function code(text: string): string {
  return text.replace(/`/g, "'");
}

function fit(text: string): string {
  if (text.length <= MESSAGE_LIMIT) return text;
  const ending = '\n… (more than fits in one message)';
  return text.slice(0, MESSAGE_LIMIT - ending.length).replace(/[,;\n][^,;\n]*$/, '') + ending;
}
