// npm run tokens -- "<prompt>" [--model DIR|NAME] [--prompt-syntax a1111|plain]
import { join } from 'node:path';
import { config as loadDotenv } from 'dotenv';
import { resolveModelDir } from '../models/default-model.ts';
import { defaultEmbeddingsDir, embeddingsForContext, scanEmbeddings } from '../models/embeddings.ts';
import { describeInstalledModel } from '../models/installed.ts';
import { ClipTokenizer } from '../pipeline/tokenizer.ts';
import { formatTokenView, tokenSummary, viewTokens } from '../prompt/token-view.ts';
import { runCli, UsageError, type CommandLine, type CommandSpec, type Flag } from './command-line.ts';
import { PROMPT_SYNTAX_FLAG, readPromptSyntax } from './prompt-syntax.ts';

const SPEC = {
  name: 'tokens',
  command: 'npm run tokens --',
  usage: '"<prompt>" [options]',
  description:
    "Shows a prompt as the model's CLIP tokenizer cuts it: each token's position, id and vocabulary entry (</w> ends a\n" +
    'word), its weight, the chunks of 75 tokens and their BREAKs, or with the plain syntax where the prompt is cut.\n' +
    'A textual-inversion embedding (EMBEDDINGS_DIR) takes one position per vector.\n' +
    'Only the tokenizer runs; the model is not loaded.',
  flags: {
    model: {
      type: 'string',
      value: 'DIR|NAME',
      help: 'A model folder, an installed model name (npm run model:list), or tiny for the generated test model.',
      default: 'SD_MODEL_DIR, else the only installed model, else tiny',
    },
    'prompt-syntax': PROMPT_SYNTAX_FLAG,
  },
  notes: ['Exit status: 0 the model takes the prompt, 1 it would refuse it (too long, a malformed weight), 2 bad arguments.'],
} satisfies CommandSpec<Record<string, Flag>>;

async function main({ values, positionals }: CommandLine<typeof SPEC.flags>): Promise<number> {
  loadDotenv({ quiet: true });
  if (positionals.length !== 1) {
    throw new UsageError(positionals.length === 0 ? 'a prompt is required' : `expected one prompt, got ${positionals.length} (quote the prompt)`);
  }
  const syntax = readPromptSyntax(values['prompt-syntax']);
  const model = await resolveModelDir(values.model).catch((error: Error) => Promise.reject(new UsageError(error.message)));
  if (model.notice) process.stderr.write(`${model.notice}\n`);
  const { info } = await describeInstalledModel(model.dir).catch((error: Error) => Promise.reject(new UsageError(error.message)));
  const tokenizer = await ClipTokenizer.fromDirectory(join(model.dir, 'tokenizer'));
  const { embeddings } = await scanEmbeddings(defaultEmbeddingsDir());
  const view = viewTokens(positionals[0], syntax, tokenizer, info.maxPromptChunks, embeddingsForContext(embeddings, info.textContextWidth));
  process.stdout.write(`${info.name} · ${tokenSummary(view)}\n${formatTokenView(view)}\n`);
  if (!view.problem) return 0;
  process.stderr.write(`tokens: ${view.problem}\n`);
  return 1;
}

runCli(SPEC, main);
