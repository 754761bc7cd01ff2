import { ClipTokenizer } from '../pipeline/tokenizer.ts';

/**
 * Tokenizers loaded once per key (a model folder, or the digest of a tokenizer's files): the token view and the
 * prompt-length check at enqueue use the tokenizer of the model a job would get, without loading the model. A load
 * that failed is tried again next time.
 */
export class TokenizerCache {
  private readonly loaded = new Map<string, Promise<ClipTokenizer>>();

  get(key: string, load: () => Promise<ClipTokenizer>): Promise<ClipTokenizer> {
    let tokenizer = this.loaded.get(key);
    if (!tokenizer) {
      tokenizer = load();
      this.loaded.set(key, tokenizer);
      tokenizer.catch(() => this.loaded.delete(key));
    }
    return tokenizer;
  }
}
