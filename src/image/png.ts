import { inflateSync } from 'node:zlib';
import sharp from 'sharp';
import extractChunks, { type PngChunk } from 'png-chunks-extract';
import encodeChunks from 'png-chunks-encode';
import type { RgbImage } from '../pipeline/vae.ts';

const PARAMETERS_KEY = 'parameters';

/** An 8-bit RGB PNG carrying the generation's settings as a `parameters` text chunk. */
export async function encodePng(image: RgbImage, parameters: string): Promise<Uint8Array> {
  const png = await sharp(image.pixels, { raw: { width: image.width, height: image.height, channels: 3 } })
    .png({ compressionLevel: 6 })
    .toBuffer();
  const chunks = extractChunks(png);
  chunks.splice(chunks.length - 1, 0, textChunk(PARAMETERS_KEY, parameters));
  return encodeChunks(chunks);
}

/** The `parameters` text of a PNG, or undefined when it has none (or is not a PNG). */
export function readPngParameters(png: Uint8Array): string | undefined {
  let chunks: PngChunk[];
  try {
    chunks = extractChunks(png);
  } catch {
    return undefined;
  }
  for (const chunk of chunks) {
    const text = chunk.name === 'tEXt' ? decodeText(chunk.data) : chunk.name === 'iTXt' ? decodeInternationalText(chunk.data) : undefined;
    if (text?.key === PARAMETERS_KEY) return text.value;
  }
  return undefined;
}

// Like PIL's PngInfo.add_text (what AUTOMATIC1111 uses): tEXt when the text is Latin-1, else uncompressed UTF-8 iTXt.
function textChunk(key: string, value: string): PngChunk {
  const isLatin1 = [...value].every((char) => char.codePointAt(0)! <= 0xff);
  if (isLatin1) {
    return { name: 'tEXt', data: Buffer.concat([Buffer.from(key, 'latin1'), Buffer.from([0]), Buffer.from(value, 'latin1')]) };
  }
  const header = Buffer.concat([Buffer.from(key, 'latin1'), Buffer.from([0, 0, 0, 0, 0])]);
  return { name: 'iTXt', data: Buffer.concat([header, Buffer.from(value, 'utf8')]) };
}

function decodeText(data: Uint8Array): { key: string; value: string } {
  const separator = data.indexOf(0);
  return { key: Buffer.from(data.subarray(0, separator)).toString('latin1'), value: Buffer.from(data.subarray(separator + 1)).toString('latin1') };
}

function decodeInternationalText(data: Uint8Array): { key: string; value: string } | undefined {
  const keyEnd = data.indexOf(0);
  const compressed = data[keyEnd + 1] === 1;
  const languageEnd = data.indexOf(0, keyEnd + 3);
  const translatedEnd = data.indexOf(0, languageEnd + 1);
  if (keyEnd < 0 || languageEnd < 0 || translatedEnd < 0) return undefined;
  const body = data.subarray(translatedEnd + 1);
  return {
    key: Buffer.from(data.subarray(0, keyEnd)).toString('latin1'),
    value: (compressed ? inflateSync(body) : Buffer.from(body)).toString('utf8'),
  };
}
