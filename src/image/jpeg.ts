import sharp from 'sharp';

const JPEG_QUALITY = 95;
/** EXIF tags: IFD0's pointer to the Exif IFD, and the Exif IFD's UserComment. */
const EXIF_IFD_POINTER = 0x8769;
const USER_COMMENT = 0x9286;
const TYPE_LONG = 4;
const TYPE_UNDEFINED = 7;
const UNICODE_PREFIX = Buffer.from('UNICODE\0', 'latin1');
const MAX_SEGMENT_PAYLOAD = 0xffff - 2;

/**
 * A JPEG of the image with the generation's settings in EXIF UserComment, as AUTOMATIC1111 writes JPEGs (piexif's
 * "unicode" encoding: UTF-16 big-endian after a UNICODE prefix), so PNG Info tabs read it back. sharp's own EXIF
 * writer would reduce the text to ASCII, so the segment is built here and put right after the JPEG's SOI marker.
 */
export async function encodeJpeg(image: Uint8Array, parameters: string): Promise<Uint8Array> {
  const jpeg = await sharp(image).jpeg({ quality: JPEG_QUALITY }).toBuffer();
  if (jpeg[0] !== 0xff || jpeg[1] !== 0xd8) throw new Error('sharp wrote a JPEG that does not start with SOI');
  const exif = exifWithUserComment(parameters);
  if (exif.length > MAX_SEGMENT_PAYLOAD) throw new Error('the parameters are too long for a JPEG EXIF segment');
  const header = Buffer.from([0xff, 0xe1, (exif.length + 2) >> 8, (exif.length + 2) & 0xff]);
  return new Uint8Array(Buffer.concat([jpeg.subarray(0, 2), header, exif, jpeg.subarray(2)]));
}

/** "Exif\0\0", a little-endian TIFF header, IFD0 with one entry pointing at an Exif IFD that holds the UserComment. */
function exifWithUserComment(text: string): Buffer {
  const comment = Buffer.concat([UNICODE_PREFIX, Buffer.from(text, 'utf16le').swap16()]);
  const ifd0At = 8;
  const exifIfdAt = ifd0At + 2 + 12 + 4;
  const commentAt = exifIfdAt + 2 + 12 + 4;
  const tiff = Buffer.alloc(commentAt + comment.length);
  tiff.write('II', 0, 'latin1');
  tiff.writeUInt16LE(42, 2);
  tiff.writeUInt32LE(ifd0At, 4);
  writeIfd(tiff, ifd0At, EXIF_IFD_POINTER, TYPE_LONG, 1, exifIfdAt);
  writeIfd(tiff, exifIfdAt, USER_COMMENT, TYPE_UNDEFINED, comment.length, commentAt);
  comment.copy(tiff, commentAt);
  return Buffer.concat([Buffer.from('Exif\0\0', 'latin1'), tiff]);
}

/** An IFD of one entry (tag, type, count, value or offset) and no next IFD. */
function writeIfd(tiff: Buffer, at: number, tag: number, type: number, count: number, value: number): void {
  tiff.writeUInt16LE(1, at);
  tiff.writeUInt16LE(tag, at + 2);
  tiff.writeUInt16LE(type, at + 4);
  tiff.writeUInt32LE(count, at + 6);
  tiff.writeUInt32LE(value, at + 10);
  tiff.writeUInt32LE(0, at + 14);
}
