import { PROMPT_SYNTAXES, type PromptSyntax } from '../prompt/prompt-tokens.ts';
import { UsageError, type Flag } from './command-line.ts';

/** `--prompt-syntax`, shared by the commands that read prompts as the bot does. */
export const PROMPT_SYNTAX_FLAG = {
  type: 'string',
  value: 'a1111|plain',
  help: "a1111: AUTOMATIC1111's syntax, (word:1.3), [word], BREAK, prompts beyond 75 tokens in chunks; plain: the text as diffusers reads it, cut after 75 tokens.",
  default: 'PROMPT_SYNTAX, else a1111',
} as const satisfies Flag;

/** The flag's value, else PROMPT_SYNTAX, else a1111; throws UsageError naming the one that is wrong. */
export function readPromptSyntax(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): PromptSyntax {
  const [source, value] = flag !== undefined ? ['--prompt-syntax', flag] : ['PROMPT_SYNTAX', env.PROMPT_SYNTAX || 'a1111'];
  const syntax = PROMPT_SYNTAXES.find((name) => name === value);
  if (!syntax) throw new UsageError(`${source} must be one of ${PROMPT_SYNTAXES.join(', ')} (got "${value}")`);
  return syntax;
}
