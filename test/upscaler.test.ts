import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RgbImage } from '../src/pipeline/vae.ts';
import { axisSpans } from '../src/upscale/tiles.ts';
import { encodeModel, GraphBuilder } from '../src/graphs/onnx-graph.ts';
import { OnnxUpscaler, upscaleImage } from '../src/upscale/upscaler.ts';
import { upscalerGraph } from './upscaler-graph.ts';

const loadOptions = { executionProvider: 'cpu' as const, clock: { runMs: 0 }, fuseAttention: false };

function testImage(width: number, height: number): RgbImage {
  return { pixels: Uint8Array.from({ length: width * height * 3 }, (_, i) => (i * 97 + (i % 7) * 31) % 256), width, height };
}

describe('tiled upscaling', () => {
  let root: string;
  let dynamic: OnnxUpscaler;
  let fixed: OnnxUpscaler;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'upscaler-'));
    mkdirSync(root, { recursive: true });
    writeFileSync(join(root, 'any-size.onnx'), upscalerGraph());
    writeFileSync(join(root, 'fixed-24.onnx'), upscalerGraph(24));
    dynamic = await OnnxUpscaler.load(join(root, 'any-size.onnx'), 'any-size', loadOptions);
    fixed = await OnnxUpscaler.load(join(root, 'fixed-24.onnx'), 'fixed-24', loadOptions);
  });
  afterAll(async () => {
    await Promise.all([dynamic?.release(), fixed?.release()]);
    await rm(root, { recursive: true, force: true });
  });

  it('measures the scale; an image that fits one window is the untiled run of the model', async () => {
    expect(dynamic.scale).toBe(2);
    expect(fixed.scale).toBe(2);
    const image = testImage(20, 12);
    const session = await ort.InferenceSession.create(join(root, 'any-size.onnx'));
    const planar = new Float32Array(3 * 20 * 12);
    for (let i = 0; i < 20 * 12; i++) for (let c = 0; c < 3; c++) planar[c * 240 + i] = image.pixels[i * 3 + c] / 255;
    const { output } = await session.run({ image: new ort.Tensor('float32', planar, [1, 3, 12, 20]) });
    await session.release();
    const untiled = new Uint8Array(40 * 24 * 3);
    const data = output.data as Float32Array;
    for (let i = 0; i < 40 * 24; i++) for (let c = 0; c < 3; c++) untiled[i * 3 + c] = Math.round(data[c * 960 + i] * 255);
    const tiled = await dynamic.upscale(image, { window: 32 });
    expect(tiled).toMatchObject({ width: 40, height: 24 });
    expect(tiled.pixels).toEqual(untiled);
  });

  it('windows with overlap beyond the receptive field stitch into exactly the untiled image', async () => {
    const image = testImage(53, 37);
    const whole = await dynamic.upscale(image, { window: 64 });
    const tiles: number[] = [];
    const tiled = await dynamic.upscale(image, { window: 16, overlap: 3, onTile: (_, total) => tiles.push(total) });
    expect(tiles.length).toBeGreaterThan(9);
    expect(tiled.pixels).toEqual(whole.pixels);
    // A model exported for 24x24 inputs runs windows of exactly that size, shifted inside the image at its edges.
    expect((await fixed.upscale(image, { overlap: 3 })).pixels).toEqual(whole.pixels);
  });

  it('spans cover every pixel once, each read window holding its core plus the overlap where the image has it', () => {
    for (const [length, window, overlap] of [[100, 32, 4], [33, 32, 4], [32, 32, 4], [7, 32, 4], [250, 64, 16]]) {
      const spans = axisSpans(length, window, overlap);
      expect(spans[0].coreFrom).toBe(0);
      expect(spans.at(-1)!.coreTo).toBe(length);
      for (const [i, span] of spans.entries()) {
        if (i > 0) expect(span.coreFrom).toBe(spans[i - 1].coreTo);
        expect(span.readFrom).toBeGreaterThanOrEqual(0);
        expect(span.readFrom + span.readLength).toBeLessThanOrEqual(length);
        expect(span.readFrom).toBeLessThanOrEqual(Math.max(0, span.coreFrom - overlap));
        expect(span.readFrom + span.readLength).toBeGreaterThanOrEqual(Math.min(length, span.coreTo + overlap));
      }
    }
    expect(() => axisSpans(100, 8, 4)).toThrow('an upscaler window of 8 pixels leaves no core with 4 pixels of overlap');
  });

  it('reaches ×4 with a ×2 model in two passes, ×3 by Lanczos down from ×4, and says which way it went', async () => {
    const image = testImage(10, 6);
    const x4 = await upscaleImage(image, 4, dynamic);
    expect(x4.method).toEqual({ kind: 'model', name: 'any-size' });
    expect(x4.image.pixels).toEqual((await dynamic.upscale(await dynamic.upscale(image))).pixels);
    const x3 = await upscaleImage(image, 3, dynamic);
    expect(x3.image).toMatchObject({ width: 30, height: 18 });
    const plain = await upscaleImage(image, 2, undefined);
    expect(plain.method).toEqual({ kind: 'lanczos' });
    expect(plain.image).toMatchObject({ width: 20, height: 12 });
    expect(plain.image.pixels).toHaveLength(20 * 12 * 3);
  });

  it('refuses a graph that is not an image upscaler', async () => {
    const g = new GraphBuilder({ precision: 'fp32', attention: 'unfused' });
    g.op('Identity', ['x'], [], 'y');
    writeFileSync(join(root, 'not-an-upscaler.onnx'), encodeModel(g.toModel('x', [{ name: 'x', type: 'float32', shape: [1, 4, 'h', 'w'] }], [{ name: 'y', type: 'float32', shape: [1, 4, 'h', 'w'] }])));
    await expect(OnnxUpscaler.load(join(root, 'not-an-upscaler.onnx'), 'odd', loadOptions)).rejects.toThrow('upscaler odd: its input x is [1, 4, h, w], not an RGB image [1, 3, H, W]');
  });
});
