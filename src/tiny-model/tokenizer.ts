import { clipTokenizerConfigFiles } from '../graphs/stable-diffusion.ts';
import { byteSymbols } from '../prompt/byte-level.ts';

export const START_OF_TEXT = '<|startoftext|>';
export const END_OF_TEXT = '<|endoftext|>';

export type PadToken = typeof END_OF_TEXT | '!';

/** Common prompt words; BPE merges are learnt from these until each is a single token. */
const WORDS = `
a an the of in on at with and or by for to from is under over near
dog cat fox bird horse fish owl lion tiger bear wolf rabbit mouse cow duck dragon
man woman girl boy person king queen robot wizard knight astronaut
hat red blue green yellow black white orange purple pink gold silver brown gray
house castle city forest mountain river lake sea ocean beach sky sun moon star stars cloud clouds
rain snow tree trees flower flowers garden field road street space planet night day sunset sunrise
big small tiny old young happy cute beautiful dark bright
photo painting portrait drawing sketch art style oil watercolor digital render cinematic lighting
detailed highly quality high best masterpiece realistic photorealistic
wearing sitting standing running flying holding
car boat ship train bike
blurry ugly bad low worst deformed text watermark
`
  .split(/\s+/)
  .filter((word) => word.length > 0);

/**
 * Learns merges the way BPE training does: split each word into characters with `</w>` on the last, then
 * repeatedly merge the most frequent adjacent pair (ties: the lexically smallest pair) until every word is
 * one symbol. Deterministic: same word list, same merges.
 */
function learnMerges(words: string[]): Array<[string, string]> {
  const segmented = words.map((word) => {
    const chars = [...word];
    chars[chars.length - 1] += '</w>';
    return chars;
  });
  const merges: Array<[string, string]> = [];
  for (;;) {
    const counts = new Map<string, number>();
    for (const symbols of segmented) {
      for (let i = 0; i + 1 < symbols.length; i++) {
        const key = `${symbols[i]} ${symbols[i + 1]}`;
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
    }
    if (counts.size === 0) return merges;
    let best = '';
    let bestCount = 0;
    for (const [key, count] of counts) {
      if (count > bestCount || (count === bestCount && key < best)) {
        best = key;
        bestCount = count;
      }
    }
    const [left, right] = best.split(' ');
    merges.push([left, right]);
    for (const symbols of segmented) {
      for (let i = 0; i + 1 < symbols.length; i++) {
        if (symbols[i] === left && symbols[i + 1] === right) symbols.splice(i, 2, left + right);
      }
    }
  }
}

export interface TinyTokenizer {
  /** token → id: 256 byte symbols, the same with `</w>`, one token per merge, then the two special tokens. */
  vocab: Map<string, number>;
  merges: Array<[string, string]>;
  /** File name → contents, as Stable Diffusion ships `tokenizer/`. */
  files: Record<string, string>;
}

export function buildTokenizer(padToken: PadToken): TinyTokenizer {
  const vocab = new Map<string, number>();
  const add = (token: string) => {
    if (!vocab.has(token)) vocab.set(token, vocab.size);
  };
  const symbols = byteSymbols();
  symbols.forEach(add);
  symbols.forEach((symbol) => add(`${symbol}</w>`));
  const merges = learnMerges(WORDS);
  for (const [left, right] of merges) add(left + right);
  add(START_OF_TEXT);
  add(END_OF_TEXT);

  return {
    vocab,
    merges,
    files: {
      'vocab.json': JSON.stringify(Object.fromEntries(vocab)),
      'merges.txt': ['#version: 0.2', ...merges.map(([left, right]) => `${left} ${right}`)].join('\n') + '\n',
      ...clipTokenizerConfigFiles(padToken, 'imagine-bot/tiny-clip'),
    },
  };
}
