import { inflateSync } from 'node:zlib';
import sharp from 'sharp';
import extractChunks, { type PngChunk } from 'png-chunks-extract';
import encodeChunks from 'png-chunks-encode';
import type { RgbImage } from '../pipeline/vae.ts';

const PARAMETERS_KEY = 'parameters';

const PNG_SIGNATURE_BYTES = 8;
/** IEND is always a PNG's last chunk: length 0, type, CRC. */
const IEND_BYTES = 12;

/** An 8-bit RGB PNG carrying the generation's settings as a `parameters` text chunk. */
export async function encodePng(image: RgbImage, parameters: string): Promise<Uint8Array> {
  const png = await sharp(image.pixels, { raw: { width: image.width, height: image.height, channels: 3 } })
    .png({ compressionLevel: 6 })
    .toBuffer();
  // The text chunk goes in just before IEND. Splicing it in, rather than re-chunking the whole file, keeps the
  // image's ~700 kB out of a JavaScript CRC pass that took several times as long as sharp's encoding at 512x512.
  const iendAt = png.length - IEND_BYTES;
  if (png.toString('latin1', iendAt + 4, iendAt + 8) !== 'IEND') throw new Error('sharp wrote a PNG that does not end in IEND');
  const text = encodeChunks([textChunk(PARAMETERS_KEY, parameters)]).subarray(PNG_SIGNATURE_BYTES);
  // A fresh buffer of its own (not Node's shared pool), as the worker transfers it to the main thread.
  const output = new Uint8Array(png.length + text.length);
  output.set(png.subarray(0, iendAt));
  output.set(text, iendAt);
  output.set(png.subarray(iendAt), iendAt + text.length);
  return output;
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
