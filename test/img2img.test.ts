import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeModel, GraphBuilder, intsAttr } from '../src/graphs/onnx-graph.ts';
import { loadInitImage } from '../src/image/init-image.ts';
import { readPngParameters } from '../src/image/png.ts';
import { importModel } from '../src/import/import-model.ts';
import { noisedImageLatents, timestepsForStrength } from '../src/pipeline/img2img.ts';
import { StableDiffusionPipeline } from '../src/pipeline/pipeline.ts';
import type { InitImage } from '../src/pipeline/types.ts';
import { VaeEncoder } from '../src/pipeline/vae-encoder.ts';
import { TorchGenerator } from '../src/random/torch-generator.ts';
import { createScheduler } from '../src/schedulers/index.ts';
import { fixturePath, fixturesPresent, maxAbsDiff, readF32, readFixtureJson } from './fixtures.ts';
import { entryPoint } from './entry-point.ts';
import { expectMatch, requestOf } from './drawing.ts';

interface Img2imgCase {
  id: string;
  prompt: string;
  negative_prompt: string | null;
  image: string;
  strength: number;
  scheduler: { sampler: string };
  steps: number;
  guidance: number;
  seed: number;
  width: number;
  height: number;
  unet_timesteps: number[];
  files: { u8: string };
  intermediates?: Record<string, { file: string; shape: number[] }>;
}

const run = promisify(execFile);
const projectRoot = resolve(fileURLToPath(import.meta.url), '..', '..');
const dir = (...parts: string[]) => fixturePath('e2e2', 'img2img', ...parts);

describe.runIf(fixturesPresent)('img2img draws diffusers’ StableDiffusionImg2ImgPipeline images', () => {
  const cases = () => readFixtureJson<{ cases: Img2imgCase[] }>('e2e2', 'img2img', 'manifest.json').cases;
  let root: string;
  let modelDir: string;
  let pipeline: StableDiffusionPipeline;

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'img2img-'));
    const imported = await importModel({ source: fixturePath('e2e2', 'models', 'tiny-sd-pub-torch'), modelsDir: root, name: 'tiny-sd-pub-torch' });
    modelDir = imported.dir;
    pipeline = await StableDiffusionPipeline.fromPretrained(modelDir);
  });
  afterAll(async () => {
    await pipeline?.release();
    await rm(root, { recursive: true, force: true });
  });

  const initImage = (entry: Img2imgCase): InitImage => ({ image: readFileSync(dir(entry.image)).toString('base64'), strength: entry.strength });
  const picture = (entry: Img2imgCase) => loadInitImage(readFileSync(dir(entry.image)), { width: entry.width, height: entry.height }, 1e6);

  it('every case: strength, scheduler and seed give the reference image within 2 levels (mean 0.5)', async () => {
    expect(pipeline.info.imageToImage).toBe(true);
    for (const entry of cases()) {
      const steps: number[] = [];
      const { image, settings } = await pipeline.generate({
        ...requestOf(entry),
        scheduler: entry.scheduler.sampler,
        initImage: initImage(entry),
        onStep: ({ totalSteps }) => steps.push(totalSteps),
      });
      expect(settings.strength, entry.id).toBe(entry.strength);
      expect(steps, entry.id).toHaveLength(entry.unet_timesteps.length);
      expectMatch(image.pixels, join('e2e2', 'img2img', entry.files.u8), entry.id);
    }
  });

  it('the command line draws a case from --image and --strength, and its PNG says the denoising strength', async () => {
    const entry = cases()[1];
    const out = join(root, 'cli.png');
    const args = [entry.prompt, '--image', dir(entry.image), '--strength', String(entry.strength), '--seed', String(entry.seed), '--steps', String(entry.steps)];
    args.push('--guidance', String(entry.guidance), '--scheduler', entry.scheduler.sampler, '--model', modelDir, '--out', out);
    const { stdout } = await run(process.execPath, [entryPoint('src/cli/imagine.ts'), ...args], { cwd: projectRoot, env: { ...process.env, SD_MODEL_DIR: '' } });
    expect(stdout).toContain(`(${entry.width}x${entry.height}, ${entry.steps} steps, ${entry.scheduler.sampler}, strength ${entry.strength})`);
    const png = readFileSync(out);
    expect(readPngParameters(png)).toContain(`Denoising strength: ${entry.strength}`);
    expectMatch(await sharp(png).raw().toBuffer(), join('e2e2', 'img2img', entry.files.u8));
  });

  it('the first case step by step: encoder mean and std, the two draws, the noised latents the U-Net first sees', async () => {
    const entry = cases().find((candidate) => candidate.intermediates)!;
    const arrays = entry.intermediates!;
    const read = (name: string) => readF32('e2e2', 'img2img', arrays[name].file);
    const { scheduler } = createScheduler(entry.scheduler.sampler, JSON.parse(readFileSync(join(modelDir, 'scheduler', 'scheduler_config.json'), 'utf8')));
    scheduler.setTimesteps(entry.steps);
    const timesteps = timestepsForStrength(scheduler, entry.steps, entry.strength);
    expect(timesteps).toEqual(entry.unet_timesteps);

    const encoder = (await VaeEncoder.load(modelDir, { executionProvider: 'cpu', clock: { runMs: 0 }, fuseAttention: true }))!;
    try {
      const generator = new TorchGenerator(BigInt(entry.seed));
      const latents = await noisedImageLatents(encoder, await picture(entry), generator, scheduler, timesteps[0]);
      // With guidance the U-Net's first input is [uncond, cond] of the same latents (PNDM does not scale them).
      const firstInput = read('unet_sample').subarray(0, latents.length);
      expect(maxAbsDiff(latents, firstInput)).toBeLessThanOrEqual(1e-4);

      // The generator drew ε for latent_dist.sample, then the noise: the reference's two draws in that order.
      const replay = new TorchGenerator(BigInt(entry.seed));
      expect(maxAbsDiff(replay.randn(latents.length), read('randn_0'))).toBeLessThanOrEqual(1e-5);
      expect(maxAbsDiff(replay.randn(latents.length), read('randn_1'))).toBeLessThanOrEqual(1e-5);

      // Encoding with ε = 0 leaves scaling_factor · mean; ε = 1 adds scaling_factor · std.
      const rgb = await picture(entry);
      const mean = await encoder.encode(rgb, { randn: (count) => new Float32Array(count) });
      const meanPlusStd = await encoder.encode(rgb, { randn: (count) => new Float32Array(count).fill(1) });
      const scale = encoder.scalingFactor;
      expect(maxAbsDiff(mean.map((v) => v / scale), read('vae_encoder_mean'))).toBeLessThanOrEqual(1e-4);
      expect(maxAbsDiff(meanPlusStd.map((v, i) => (v - mean[i]) / scale), read('vae_encoder_std'))).toBeLessThanOrEqual(1e-4);
    } finally {
      await encoder.release();
    }
  });
});

describe('VAE encoders as exporters write them', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'vae-encoders-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  /**
   * A stand-in encoder: a strided 8x8 convolution makes 8 moment channels (mean, log-variance), written out as
   * Optimum does (`latent_parameters`) or as older exports did (`latent_sample`, drawn inside with RandomNormalLike).
   */
  function writeEncoder(name: string, output: 'latent_parameters' | 'latent_sample'): string {
    const g = new GraphBuilder({ precision: 'fp32', attention: 'unfused' });
    const weights = Float32Array.from({ length: 8 * 3 * 8 * 8 }, (_, i) => Math.sin(i * 0.37) * 0.05);
    const moments = g.op('Conv', ['sample', g.floatConstant('weight', [8, 3, 8, 8], weights)], [intsAttr('strides', [8, 8])]);
    if (output === 'latent_parameters') {
      g.op('Identity', [moments], [], 'latent_parameters');
    } else {
      const axis = g.int64Constant('axis', [1]);
      const slice = (start: number) => g.op('Slice', [moments, g.int64Constant(`start${start}`, [start]), g.int64Constant(`end${start}`, [start + 4]), axis]);
      const mean = slice(0);
      const std = g.op('Exp', [g.op('Mul', [slice(4), g.scalar('half', 0.5)])]);
      const epsilon = g.op('RandomNormalLike', [mean]);
      g.op('Add', [mean, g.op('Mul', [std, epsilon])], [], 'latent_sample');
    }
    const model = g.toModel('vae_encoder', [{ name: 'sample', type: 'float32', shape: ['batch', 3, 'height', 'width'] }], [
      { name: output, type: 'float32', shape: ['batch', output === 'latent_parameters' ? 8 : 4, 'h', 'w'] },
    ]);
    const dir = join(root, name);
    mkdirSync(join(dir, 'vae_encoder'), { recursive: true });
    writeFileSync(join(dir, 'vae_encoder', 'model.onnx'), encodeModel(model));
    return dir;
  }

  const loadOptions = { executionProvider: 'cpu' as const, clock: { runMs: 0 }, fuseAttention: false };
  const picture = { pixels: Uint8Array.from({ length: 16 * 24 * 3 }, (_, i) => (i * 37) % 256), width: 16, height: 24 };

  it('Optimum’s latent_parameters and an older in-graph sample give the same seeded latents: mean + exp(logvar/2)·ε', async () => {
    const parameters = (await VaeEncoder.load(writeEncoder('optimum', 'latent_parameters'), loadOptions))!;
    const sampled = (await VaeEncoder.load(writeEncoder('legacy', 'latent_sample'), loadOptions))!;
    try {
      const fromParameters = await parameters.encode(picture, new TorchGenerator(11n));
      const fromSample = await sampled.encode(picture, new TorchGenerator(11n));
      expect(fromParameters).toHaveLength(4 * 3 * 2);
      expect(maxAbsDiff(fromParameters, fromSample)).toBeLessThanOrEqual(1e-6);
      // ε = 0 leaves the mean: what a different seed changes is exactly std·ε.
      const mean = await parameters.encode(picture, { randn: (count) => new Float32Array(count) });
      const other = await parameters.encode(picture, new TorchGenerator(12n));
      expect(maxAbsDiff(fromParameters, mean)).toBeGreaterThan(1e-3);
      expect(maxAbsDiff(fromParameters, other)).toBeGreaterThan(1e-3);
      expect(parameters.scalingFactor).toBe(0.18215);
    } finally {
      await Promise.all([parameters.release(), sampled.release()]);
    }
  });

  it('a folder without vae_encoder has no encoder', async () => {
    expect(await VaeEncoder.load(join(root, 'nothing-here'), loadOptions)).toBeUndefined();
  });
});
