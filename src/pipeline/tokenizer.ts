import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';

/**
 * The CLIP BPE tokenizer of a diffusers model folder (`tokenizer/vocab.json` + `merges.txt`), giving the
 * ids that diffusers' CLIPTokenizer (the slow Python class its pipelines load) gives.
 *
 * Which Python behaviour: transformers' CLIPTokenizer cleans text with ftfy when ftfy is importable and
 * otherwise with its BERT BasicTokenizer. We reproduce the BasicTokenizer one (fixture column `ids_noftfy`):
 * ftfy is not a dependency of diffusers or transformers, so a plain `pip install diffusers transformers`
 * gives exactly this, and it is a small, fully specified algorithm that we match on every fixture prompt.
 * Matching ftfy would mean re-implementing its mojibake heuristics (`Ã¼ber` → `über`) and character
 * tables. The two differ only on unusual text (HTML entities, curly quotes, ligatures, full/half-width
 * forms, CJK ideographs, invisible format characters); ordinary prompts give the same ids either way.
 */
export class ClipTokenizer {
  private constructor(
    private readonly tokenizer: Tokenizer,
    /** Each id's vocabulary entry (byte-level symbols, `</w>` ending a word). */
    private readonly tokens: readonly string[],
    readonly maxLength: number,
    readonly ids: SpecialTokenIds,
    /** The id of `,</w>`, where a long prompt's chunks may be cut (undefined in a vocabulary without it). */
    readonly commaTokenId: number | undefined,
  ) {}

  /** `dir` is a model's `tokenizer/` folder; reads only local files. */
  static async fromDirectory(dir: string): Promise<ClipTokenizer> {
    return ClipTokenizer.fromFiles(await readTokenizerFiles(dir), dir);
  }

  /** The tokenizer of these files' contents; `source` names where they came from in messages. */
  static fromFiles(files: TokenizerFiles, source: string): ClipTokenizer {
    const path = (name: string) => join(source, name);
    const vocab = parseVocab(files.vocab, path('vocab.json'));
    const merges = parseMerges(files.merges, path('merges.txt'));
    const tokenizerConfig = files.tokenizerConfig === undefined ? undefined : parseJsonObject(files.tokenizerConfig, path('tokenizer_config.json'));
    const specialTokensMap = files.specialTokensMap === undefined ? undefined : parseJsonObject(files.specialTokensMap, path('special_tokens_map.json'));

    // transformers lets special_tokens_map.json override tokenizer_config.json; SD 2.x relies on that
    // (its tokenizer_config says pad "<|endoftext|>", its special_tokens_map says "!").
    const tokenSetting = (key: string, fallback: string): string =>
      tokenContent(specialTokensMap?.[key], key, source) ?? tokenContent(tokenizerConfig?.[key], key, source) ?? fallback;
    const special = {
      bos: tokenSetting('bos_token', '<|startoftext|>'),
      eos: tokenSetting('eos_token', '<|endoftext|>'),
      pad: tokenSetting('pad_token', '<|endoftext|>'),
      unk: tokenSetting('unk_token', '<|endoftext|>'),
    };
    const idOf = (token: string, role: string): number => {
      const id = vocab[token];
      if (id === undefined) throw new Error(`CLIP tokenizer in ${source}: ${role} ${JSON.stringify(token)} is not in vocab.json`);
      return id;
    };
    const ids = {
      bos: idOf(special.bos, 'bos_token'),
      eos: idOf(special.eos, 'eos_token'),
      pad: idOf(special.pad, 'pad_token'),
      unk: idOf(special.unk, 'unk_token'),
    };

    const tokenizer = new Tokenizer(clipDefinition(vocab, merges, special, ids), {});
    const tokens: string[] = [];
    for (const [token, id] of Object.entries(vocab)) tokens[id] = token;
    return new ClipTokenizer(tokenizer, tokens, readMaxLength(tokenizerConfig, source), ids, vocab[',</w>']);
  }

  /** The vocabulary entry of an id, e.g. `dog</w>` for 1929 (CLIP's vocabulary); undefined for an id it lacks. */
  tokenOf(id: number): string | undefined {
    return this.tokens[id];
  }

  /** Exactly `maxLength` ids: BOS, the prompt's tokens, EOS, then padding; too long a prompt is cut, keeping EOS last. */
  encode(text: string): number[] {
    const ids = this.tokenize(text);
    if (ids.length > this.maxLength - 2) ids.length = this.maxLength - 2;
    ids.unshift(this.ids.bos);
    ids.push(this.ids.eos);
    while (ids.length < this.maxLength) ids.push(this.ids.pad);
    return ids;
  }

  /** The text's token ids alone: no BOS/EOS, no padding, never cut (what `tokenizer(text, add_special_tokens=False)` gives). */
  tokenize(text: string): number[] {
    if (typeof text !== 'string') throw new TypeError(`ClipTokenizer expects a string, got ${typeof text}`);
    return this.tokenizer.encode(applyBasicTokenizerCleanup(text), { add_special_tokens: false }).ids;
  }
}

/** The texts of a `tokenizer/` folder's files: all a ClipTokenizer is made of (and what a worker hands a bot). */
export interface TokenizerFiles {
  vocab: string;
  merges: string;
  tokenizerConfig?: string;
  specialTokensMap?: string;
}

/** Reads a model's `tokenizer/` folder; throws naming the files it lacks. */
export async function readTokenizerFiles(dir: string): Promise<TokenizerFiles> {
  const [vocab, merges, tokenizerConfig, specialTokensMap] = await Promise.all(
    ['vocab.json', 'merges.txt', 'tokenizer_config.json', 'special_tokens_map.json'].map((name) => readOptionalText(join(dir, name))),
  );
  if (vocab === undefined || merges === undefined) {
    const missing = [vocab === undefined && 'vocab.json', merges === undefined && 'merges.txt'].filter(Boolean);
    throw new Error(`CLIP tokenizer folder ${dir} lacks ${missing.join(' and ')}`);
  }
  return { vocab, merges, ...(tokenizerConfig === undefined ? {} : { tokenizerConfig }), ...(specialTokensMap === undefined ? {} : { specialTokensMap }) };
}

export interface SpecialTokenIds {
  bos: number;
  eos: number;
  pad: number;
  unk: number;
}

/** transformers' CLIPTokenizer reads only this many merges (vocab size 49152 minus 256 bytes and 2 specials). */
const CLIP_MERGE_LIMIT = 49152 - 256 - 2;
const DEFAULT_MAX_LENGTH = 77;

// What CLIPTokenizer's pre-tokenizing regex matches: special tokens, English contractions, letter runs,
// single digits, and runs of anything else that is not whitespace.
const CLIP_WORD_PATTERN =
  "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+";

/**
 * The tokenizer.json that transformers' CLIPTokenizerFast would hold for these files: NFC, whitespace runs
 * to one space, lower-case; split with CLIP's regex; byte-level symbols; BPE whose last symbol of a word
 * carries `</w>`. BOS, EOS and padding are added by `encode`; encode-only, so no decoder.
 */
function clipDefinition(
  vocab: Record<string, number>,
  merges: [string, string][],
  special: { bos: string; eos: string; pad: string; unk: string },
  ids: SpecialTokenIds,
): object {
  // Every special token is matched whole before BPE, as the slow tokenizer does. For SD 2.x that includes
  // its pad token "!", so a "!" in a prompt becomes id 0 exactly as in diffusers (diffusers issue #4153).
  const specialTokens = new Map<string, number>([
    [special.bos, ids.bos],
    [special.eos, ids.eos],
    [special.pad, ids.pad],
    [special.unk, ids.unk],
  ]);
  return {
    added_tokens: [...specialTokens].map(([content, id]) => ({ id, content, special: true, normalized: true })),
    normalizer: {
      type: 'Sequence',
      normalizers: [{ type: 'NFC' }, { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' }, { type: 'Lowercase' }],
    },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: CLIP_WORD_PATTERN }, behavior: 'Removed', invert: true },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    model: { type: 'BPE', vocab, merges, unk_token: special.unk, end_of_word_suffix: '</w>' },
    post_processor: null,
    decoder: null,
  };
}

// Characters transformers' BasicTokenizer deletes: every "C" general category (control, format such as
// zero-width space/joiner, soft hyphen and bidi marks, private use, surrogates, unassigned) except tab,
// newline and carriage return, plus U+FFFD.
const DELETED_CHARACTERS = /(?![\t\n\r])[\p{C}\uFFFD]/gu;
// The code-point ranges BasicTokenizer treats as CJK ideographs (not kana or hangul).
const CJK_IDEOGRAPH =
  /[\u{4E00}-\u{9FFF}\u{3400}-\u{4DBF}\u{20000}-\u{2A6DF}\u{2A700}-\u{2B73F}\u{2B740}-\u{2B81F}\u{2B820}-\u{2CEAF}\u{F900}-\u{FAFF}\u{2F800}-\u{2FA1F}]/gu;

/**
 * The two BasicTokenizer steps the fast definition lacks (without them 9 of the 136 fixture prompts
 * differ, and "中文，标点。符号！" and "control\x07char" match neither reference column): delete control and
 * format characters, and make each CJK ideograph its own word, so each gets `</w>`. Done here rather than
 * with the library's BertNormalizer, which walks UTF-16 units (missing ideographs beyond U+FFFF) and keeps
 * unassigned code points. Running it before the special-token split is safe: no special token contains
 * such characters, and deleting one can only join a special token that Python also ends up matching.
 */
function applyBasicTokenizerCleanup(text: string): string {
  return text.replace(DELETED_CHARACTERS, '').replace(CJK_IDEOGRAPH, ' $& ');
}

async function readOptionalText(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

function parseJsonObject(text: string, path: string): Record<string, unknown> {
  const value = parseJson(text, path);
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error(`${path} must hold a JSON object`);
  return value as Record<string, unknown>;
}

function parseJson(text: string, path: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`${path} is not valid JSON: ${(error as Error).message}`);
  }
}

function parseVocab(text: string, path: string): Record<string, number> {
  const value = parseJson(text, path);
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error(`${path} must map tokens to ids`);
  for (const [token, id] of Object.entries(value)) {
    if (!Number.isInteger(id) || (id as number) < 0) throw new Error(`${path}: token ${JSON.stringify(token)} has id ${JSON.stringify(id)}, not a non-negative integer`);
  }
  return value as Record<string, number>;
}

function parseMerges(text: string, path: string): [string, string][] {
  const lines = text.trim().split(/\r?\n/);
  const firstMerge = lines[0]?.startsWith('#version') ? 1 : 0;
  return lines.slice(firstMerge, firstMerge + CLIP_MERGE_LIMIT).map((line, index) => {
    const pair = line.split(' ');
    if (pair.length !== 2 || !pair[0] || !pair[1]) {
      throw new Error(`${path} line ${firstMerge + index + 1}: expected two symbols separated by one space, got ${JSON.stringify(line)}`);
    }
    return [pair[0], pair[1]];
  });
}

/** A special-token setting is either the token itself or an AddedToken object with `content`. */
function tokenContent(value: unknown, key: string, dir: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  throw new Error(`CLIP tokenizer in ${dir}: ${key} must be a string or an object with a string "content"`);
}

function readMaxLength(tokenizerConfig: Record<string, unknown> | undefined, dir: string): number {
  const value = tokenizerConfig?.model_max_length;
  if (value === undefined) return DEFAULT_MAX_LENGTH;
  // Number.isSafeInteger also rejects transformers' "unset" sentinel 1e30.
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 2) {
    throw new Error(`${join(dir, 'tokenizer_config.json')}: model_max_length must be an integer of at least 2 (room for BOS and EOS), got ${JSON.stringify(value)}`);
  }
  return value;
}
