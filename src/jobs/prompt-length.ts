import type { Logger } from 'pino';
import { describeError } from '../log.ts';
import type { GenerateRequest, ModelInfo } from '../pipeline/types.ts';
import { promptLengthProblem, tokenizePrompt, type PromptTokenizer } from '../prompt/prompt-tokens.ts';
import { OptionError } from './options.ts';

/**
 * Refuses a request whose prompt (or, with guidance, negative prompt) takes more 75-token chunks than the model
 * does, as the pipeline would, but before the job is queued. Textual-inversion embeddings are not counted here (an
 * embedding's vectors may take more positions than its name's tokens): the pipeline still checks those prompts.
 * Throws OptionError.
 */
export function checkPromptLength(request: GenerateRequest, tokenizer: PromptTokenizer, model: ModelInfo): void {
  const syntax = request.promptSyntax ?? 'a1111';
  const prompts: [string, string][] = [['prompt', request.prompt]];
  if (request.guidanceScale > 1) prompts.push(['negative prompt', request.negativePrompt ?? '']);
  for (const [what, text] of prompts) {
    const problem = promptLengthProblem(tokenizePrompt(text, syntax, tokenizer), model.maxPromptChunks, what);
    if (problem) throw new OptionError(problem);
  }
}

/**
 * checkPromptLength with a tokenizer still to be had: when it cannot be loaded (a worker's files not in Redis, a
 * folder gone), the job goes on unchecked, and the pipeline refuses a prompt that is too long as it always did.
 */
export async function checkPromptLengthIfPossible(
  request: GenerateRequest,
  model: ModelInfo,
  tokenizer: (model: ModelInfo) => Promise<PromptTokenizer>,
  log: Logger,
): Promise<void> {
  let loaded: PromptTokenizer;
  try {
    loaded = await tokenizer(model);
  } catch (error) {
    log.warn({ model: model.name, error: describeError(error) }, "could not load the model's tokenizer: the prompt's length is left to the pipeline to check");
    return;
  }
  checkPromptLength(request, loaded, model);
}
