import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ClipTokenizer } from '../src/pipeline/tokenizer.ts';
import { fixturePath, fixturesPresent, readFixtureJson } from './fixtures.ts';

interface FixturePrompt {
  row: number;
  category: string;
  text: string;
  ids_noftfy: number[];
}

const BOS = 49406;
const EOS = 49407;

const tempDirs: string[] = [];
async function tokenizerDir(files: Record<string, string>, linkFixtureVocab = false): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'clip-tokenizer-'));
  tempDirs.push(dir);
  if (linkFixtureVocab) {
    await symlink(fixturePath('tokenizer', 'vocab.json'), join(dir, 'vocab.json'));
    await symlink(fixturePath('tokenizer', 'merges.txt'), join(dir, 'merges.txt'));
  }
  for (const [name, content] of Object.entries(files)) await writeFile(join(dir, name), content);
  return dir;
}
afterEach(async () => {
  await Promise.all(tempDirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

describe.runIf(fixturesPresent)('ClipTokenizer on the real CLIP vocabulary', () => {
  const prompts = fixturesPresent ? readFixtureJson<{ prompts: FixturePrompt[] }>('tokenizer', 'prompts.json').prompts : [];
  let tokenizer: ClipTokenizer;
  beforeAll(async () => {
    tokenizer = await ClipTokenizer.fromDirectory(fixturePath('tokenizer'));
  });

  it('covers all 136 fixture prompts', () => {
    expect(prompts).toHaveLength(136);
  });

  // The BasicTokenizer column (transformers without ftfy); see the module comment for why.
  it.each(prompts.map((p) => [p.row, p.category, p]))('prompt %i (%s) gives the ids_noftfy column', (_row, _category, prompt) => {
    expect(tokenizer.encode(prompt.text)).toEqual(prompt.ids_noftfy);
  });

  it('defaults to SD 1.x settings: 77 ids, padded with <|endoftext|>', () => {
    expect(tokenizer.maxLength).toBe(77);
    expect(tokenizer.ids.pad).toBe(EOS);
    expect(tokenizer.encode('')).toEqual([BOS, ...new Array(76).fill(EOS)]);
  });

  it('cuts a long prompt to 75 tokens and keeps EOS at index 76', () => {
    const ids = tokenizer.encode('cat '.repeat(100));
    // "cat</w>" is 2368 in CLIP's vocabulary.
    expect(ids).toEqual([BOS, ...new Array(75).fill(2368), EOS]);
  });

  it('lower-cases', () => {
    const redFox = prompts.find((p) => p.text === 'a red fox');
    expect(tokenizer.encode('A RED FOX')).toEqual(redFox?.ids_noftfy);
  });

  it('makes an ideograph beyond U+FFFF its own word, as BasicTokenizer does', () => {
    // Were they one word, only the last byte of the second ideograph would carry </w>.
    expect(tokenizer.encode('\u{20000}\u{20000}')).toEqual(tokenizer.encode('\u{20000} \u{20000}'));
    // Control: a non-ideograph pair (two emoji) is one word, so the two spellings differ.
    expect(tokenizer.encode('\u{1F431}\u{1F431}')).not.toEqual(tokenizer.encode('\u{1F431} \u{1F431}'));
  });

  it('pads SD 2.x style with "!" = 0 when special_tokens_map.json says so, and splits "!" out as diffusers does', async () => {
    // SD 2.1's tokenizer/ folder: tokenizer_config.json names <|endoftext|>, special_tokens_map.json "!" wins.
    const dir = await tokenizerDir(
      {
        'tokenizer_config.json': JSON.stringify({ model_max_length: 77, pad_token: '<|endoftext|>' }),
        'special_tokens_map.json': JSON.stringify({ bos_token: { content: '<|startoftext|>' }, pad_token: '!' }),
      },
      true,
    );
    const sd2 = await ClipTokenizer.fromDirectory(dir);
    expect(sd2.ids.pad).toBe(0);
    // diffusers issue #4153 prints these ids for "! !! !!!" with the SD 2.x/XL tokenizer.
    expect(sd2.encode('! !! !!!')).toEqual([BOS, 0, 0, 0, 0, 0, 0, EOS, ...new Array(69).fill(0)]);
  });
});

describe('ClipTokenizer settings and errors (tiny vocabulary)', () => {
  const vocab = JSON.stringify({ '!': 0, a: 1, b: 2, 'a</w>': 3, 'b</w>': 4, '!</w>': 5, 'ab</w>': 6, '<|startoftext|>': 7, '<|endoftext|>': 8 });
  const merges = '#version: 0.2\na b</w>\n';

  it('reads pad_token "!" and model_max_length from tokenizer_config.json', async () => {
    const dir = await tokenizerDir({
      'vocab.json': vocab,
      'merges.txt': merges,
      'tokenizer_config.json': JSON.stringify({ model_max_length: 6, pad_token: '!' }),
    });
    const tokenizer = await ClipTokenizer.fromDirectory(dir);
    expect(tokenizer.maxLength).toBe(6);
    expect(tokenizer.ids.pad).toBe(0);
    expect(tokenizer.encode('AB')).toEqual([7, 6, 8, 0, 0, 0]);
    expect(tokenizer.encode('ab ab ab ab ab')).toEqual([7, 6, 6, 6, 6, 8]);
  });

  it('without config files pads with <|endoftext|> and keeps "!" an ordinary word', async () => {
    const tokenizer = await ClipTokenizer.fromDirectory(await tokenizerDir({ 'vocab.json': vocab, 'merges.txt': merges }));
    expect(tokenizer.maxLength).toBe(77);
    expect(tokenizer.ids.pad).toBe(8);
    expect(tokenizer.encode('ab!')).toEqual([7, 6, 5, 8, ...new Array(73).fill(8)]);
  });

  it('names the missing vocab.json and merges.txt', async () => {
    await expect(ClipTokenizer.fromDirectory(await tokenizerDir({ 'vocab.json': vocab }))).rejects.toThrow(/lacks merges\.txt$/);
    await expect(ClipTokenizer.fromDirectory(await tokenizerDir({ 'merges.txt': merges }))).rejects.toThrow(/lacks vocab\.json$/);
    await expect(ClipTokenizer.fromDirectory(await tokenizerDir({}))).rejects.toThrow(/lacks vocab\.json and merges\.txt/);
  });

  it('rejects a pad token missing from the vocabulary and an unusable model_max_length', async () => {
    const badPad = await tokenizerDir({ 'vocab.json': vocab, 'merges.txt': merges, 'special_tokens_map.json': '{"pad_token": "<pad>"}' });
    await expect(ClipTokenizer.fromDirectory(badPad)).rejects.toThrow(/pad_token "<pad>" is not in vocab\.json/);
    const unsetLength = await tokenizerDir({ 'vocab.json': vocab, 'merges.txt': merges, 'tokenizer_config.json': '{"model_max_length": 1e30}' });
    await expect(ClipTokenizer.fromDirectory(unsetLength)).rejects.toThrow(/model_max_length must be an integer/);
  });
});
