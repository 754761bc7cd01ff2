/**
 * GPT-2's (and CLIP's) reversible byte-level alphabet: a BPE vocabulary spells every byte with one printable
 * character. Bytes that print as Latin-1 stand for themselves; the others (controls, space, a few more) are
 * U+0100 onwards, in byte order.
 */
function printableBytes(): number[] {
  const printable: number[] = [];
  for (let b = '!'.charCodeAt(0); b <= '~'.charCodeAt(0); b++) printable.push(b);
  for (let b = '¡'.charCodeAt(0); b <= '¬'.charCodeAt(0); b++) printable.push(b);
  for (let b = '®'.charCodeAt(0); b <= 'ÿ'.charCodeAt(0); b++) printable.push(b);
  return printable;
}

/** The 256 byte symbols in CLIP's vocabulary order (ids 0..255): the printable bytes, then the shifted ones. */
export function byteSymbols(): string[] {
  const printable = printableBytes();
  const symbols = printable.map((b) => String.fromCharCode(b));
  let shifted = 0;
  for (let b = 0; b < 256; b++) {
    if (!printable.includes(b)) symbols.push(String.fromCharCode(256 + shifted++));
  }
  return symbols;
}

const BYTE_OF_SYMBOL = (() => {
  const printable = new Set(printableBytes());
  const bytes = new Map<string, number>();
  let shifted = 0;
  for (let b = 0; b < 256; b++) bytes.set(String.fromCharCode(printable.has(b) ? b : 256 + shifted++), b);
  return bytes;
})();

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The text a vocabulary entry spells (`Ã©` → `é`, `</w>` dropped), or undefined when its bytes are not whole UTF-8
 * characters (BPE often splits an emoji's four bytes across tokens).
 */
export function tokenText(token: string): string | undefined {
  const symbols = token.endsWith('</w>') ? token.slice(0, -4) : token;
  const bytes: number[] = [];
  for (const symbol of symbols) {
    const byte = BYTE_OF_SYMBOL.get(symbol);
    if (byte === undefined) return undefined;
    bytes.push(byte);
  }
  try {
    return UTF8.decode(new Uint8Array(bytes));
  } catch {
    return undefined;
  }
}
