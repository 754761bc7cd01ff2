import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { type PullOptions, pullRepoFiles } from '../models/pull.ts';

/** OpenAI's CLIP ViT-L/14, whose tokenizer (vocabulary and merges) every SD 1.x and 2.x model uses. */
export const CLIP_TOKENIZER_REPO = 'openai/clip-vit-large-patch14';
const CACHE_FOLDER = '.clip-tokenizer';

/**
 * CLIP's vocab.json and merges.txt, for a single-file checkpoint that has none: downloaded from the hub once,
 * verified, and kept in a hidden folder of the models directory.
 */
export async function clipTokenizerFromHub(modelsDir: string, options: PullOptions = {}): Promise<string> {
  const dir = join(modelsDir, CACHE_FOLDER);
  if (!existsSync(join(dir, 'vocab.json')) || !existsSync(join(dir, 'merges.txt'))) {
    await pullRepoFiles({ repo: CLIP_TOKENIZER_REPO, names: ['vocab.json', 'merges.txt'], dir }, options);
  }
  return dir;
}
