/**
 * How an image is cut into windows an upscaler runs one at a time, so memory stays bounded whatever the image size.
 * Each window is the tile's own pixels (its core, which it writes to the output) plus up to `overlap` pixels of
 * context on every side, so a pixel near a core's edge sees what it would in one whole-image run. Windows stay
 * inside the image (shifted inward at its borders), which also lets a model exported for one input size run them.
 */

/** One window along an axis: the input range it reads and the core range it writes (input pixels). */
export interface AxisSpan {
  readFrom: number;
  readLength: number;
  coreFrom: number;
  coreTo: number;
}

export interface Tile {
  x: AxisSpan;
  y: AxisSpan;
}

/**
 * The spans covering `length` pixels with windows of at most `window` pixels (exactly `window` once the image is
 * that long), each with `overlap` pixels of context beyond its core where the image has them.
 */
export function axisSpans(length: number, window: number, overlap: number): AxisSpan[] {
  if (length <= window) return [{ readFrom: 0, readLength: length, coreFrom: 0, coreTo: length }];
  const core = window - 2 * overlap;
  if (core < 1) throw new Error(`an upscaler window of ${window} pixels leaves no core with ${overlap} pixels of overlap`);
  const spans: AxisSpan[] = [];
  for (let coreFrom = 0; coreFrom < length; coreFrom += core) {
    const coreTo = Math.min(coreFrom + core, length);
    const readFrom = Math.min(Math.max(coreFrom - overlap, 0), length - window);
    spans.push({ readFrom, readLength: window, coreFrom, coreTo });
  }
  return spans;
}

export function tilesFor(width: number, height: number, window: { width: number; height: number }, overlap: number): Tile[] {
  const columns = axisSpans(width, window.width, overlap);
  return axisSpans(height, window.height, overlap).flatMap((y) => columns.map((x) => ({ x, y })));
}
