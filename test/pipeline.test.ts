import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PipelineOptions, StableDiffusionPipeline } from '../src/pipeline/pipeline.ts';
import { writeTinyModel, type TinyModelOptions } from '../src/tiny-model/index.ts';
import { RequestError } from '../src/pipeline/types.ts';
import { runUpscale } from '../src/upscale/upscale-request.ts';
import { pixelDifference } from './fixtures.ts';

// The tiny model accepts multiples of 16 (one down level); 32x32 keeps every run to a few milliseconds.
const SMALL = { width: 32, height: 32, guidanceScale: 7.5 };
const root = mkdtempSync(join(tmpdir(), 'imagine-pipeline-'));
const pipelines = new Map<string, StableDiffusionPipeline>();

async function load(name: string, options: TinyModelOptions = {}, pipelineOptions: PipelineOptions = {}): Promise<StableDiffusionPipeline> {
  const dir = join(root, name);
  await writeTinyModel(dir, options);
  const pipeline = await StableDiffusionPipeline.fromPretrained(dir, pipelineOptions);
  pipelines.set(name, pipeline);
  return pipeline;
}

const meanAbsDifference = (a: Uint8Array, b: Uint8Array) => pixelDifference(a, b).mean;

let fp32: StableDiffusionPipeline;

beforeAll(async () => {
  fp32 = await load('fp32');
});

afterAll(async () => {
  await Promise.all([...pipelines.values()].map((pipeline) => pipeline.release()));
  rmSync(root, { recursive: true, force: true });
});

describe('StableDiffusionPipeline on the tiny model', () => {
  it('describes the model from its files', () => {
    expect(fp32.info).toMatchObject({ sizeMultiple: 16, defaultScheduler: 'PNDM', precision: 'fp32', predictionType: 'epsilon', isTurbo: false });
  });

  it('makes an RGB image of the requested size and reports what it used', async () => {
    const steps: number[] = [];
    const output = await fp32.generate({ prompt: 'a dog wearing hat', seed: 42, steps: 4, ...SMALL, onStep: ({ step }) => steps.push(step) });
    expect(output.image.pixels).toHaveLength(32 * 32 * 3);
    expect(output.settings).toMatchObject({ seed: '42', steps: 4, scheduler: 'PNDM', guidanceScale: 7.5, width: 32, height: 32 });
    // PNDM (PLMS) makes one more U-Net call than steps.
    expect(steps).toEqual([1, 2, 3, 4, 5]);
    expect(output.timings.onnxMs).toBeGreaterThan(0);
    expect(output.timings.totalMs).toBeGreaterThanOrEqual(output.timings.denoiseMs);
  });

  it('gives identical pixels for the same seed and different ones for another', async () => {
    const request = { prompt: 'a red fox', steps: 3, ...SMALL };
    const first = await fp32.generate({ ...request, seed: 7 });
    const again = await fp32.generate({ ...request, seed: 7 });
    const other = await fp32.generate({ ...request, seed: 8 });
    expect(again.image.pixels).toEqual(first.image.pixels);
    expect(meanAbsDifference(other.image.pixels, first.image.pixels)).toBeGreaterThan(1);
  });

  it('uses the negative prompt only when guidance is above 1', async () => {
    const request = { prompt: 'a cat', seed: 3, steps: 3, ...SMALL };
    const plain = await fp32.generate({ ...request, guidanceScale: 1 });
    const ignoredNegative = await fp32.generate({ ...request, guidanceScale: 1, negativePrompt: 'dog' });
    const zero = await fp32.generate({ ...request, guidanceScale: 0, negativePrompt: 'dog' });
    expect(ignoredNegative.image.pixels).toEqual(plain.image.pixels);
    expect(zero.image.pixels).toEqual(plain.image.pixels);
    const guided = await fp32.generate({ ...request, guidanceScale: 7.5 });
    const guidedNegative = await fp32.generate({ ...request, guidanceScale: 7.5, negativePrompt: 'dog' });
    expect(meanAbsDifference(guided.image.pixels, plain.image.pixels)).toBeGreaterThan(0.5);
    expect(meanAbsDifference(guidedNegative.image.pixels, guided.image.pixels)).toBeGreaterThan(0.5);
  });

  it('on the CPU runs guidance as two batch-1 U-Net calls a step, and draws what one batch-2 call draws', async () => {
    const calls = { sequential: 0, batched: 0 };
    const loadCounting = async (name: keyof typeof calls, options: PipelineOptions) => {
      const pipeline = await StableDiffusionPipeline.fromPretrained(join(root, 'fp32'), { ...options, onOnnxRun: (label) => label === 'unet' && calls[name]++ });
      pipelines.set(name, pipeline);
      return pipeline;
    };
    const sequential = await loadCounting('sequential', {});
    const batched = await loadCounting('batched', { sequentialGuidance: false });
    const request = { prompt: 'a cat', negativePrompt: 'dog', seed: 3, steps: 3, scheduler: 'Euler', ...SMALL };
    const halves = await sequential.generate(request);
    const batch = await batched.generate(request);
    expect(calls).toEqual({ sequential: 6, batched: 3 });
    expect(pixelDifference(halves.image.pixels, batch.image.pixels).max).toBeLessThanOrEqual(1);
  });

  it('stops within one step when aborted', async () => {
    const controller = new AbortController();
    const seen: number[] = [];
    const run = fp32.generate({
      prompt: 'a fox',
      steps: 10,
      seed: 1,
      ...SMALL,
      signal: controller.signal,
      onStep: ({ step }) => {
        seen.push(step);
        if (step === 2) controller.abort();
      },
    });
    await expect(run).rejects.toMatchObject({ name: 'AbortError' });
    expect(seen).toEqual([1, 2]);
  });

  it.each([
    [{ width: 40 }, /width 40 is not a multiple of 16.*try 32 or 48/],
    [{ height: 0 }, /height must be a whole number/],
    [{ steps: 0 }, /steps must be a whole number from 1/],
    [{ steps: 2.5 }, /steps must be a whole number/],
    [{ guidanceScale: Number.NaN }, /guidance must be a number/],
    [{ seed: '-1' }, /seed/i],
    [{ scheduler: 'Turbo Warp' }, /Turbo Warp.*Euler a/s],
  ])('rejects bad input %o with a clear message', async (bad, message) => {
    await expect(fp32.generate({ prompt: 'x', steps: 1, seed: 1, ...SMALL, ...bad })).rejects.toThrow(message);
  });
});

describe('exporter variations', () => {
  const request = { prompt: 'a dog wearing hat', seed: 11, steps: 3, ...SMALL };

  it.each<[string, TinyModelOptions]>([
    ['external weights.pb (diffusers converter)', { unetExternalData: 'weights.pb' }],
    ['external model.onnx_data (Optimum)', { unetExternalData: 'model.onnx_data' }],
    ['external model.onnx.data', { unetExternalData: 'model.onnx.data' }],
    ['int64 ids and a scalar timestep (Optimum)', { inputIdsType: 'int64', timestepShape: 'scalar' }],
    ['a [1] float timestep', { timestepShape: 'one' }],
  ])('%s gives the same image as the fp32 model', async (name, options) => {
    const reference = await fp32.generate(request);
    const variant = await (await load(name, options)).generate(request);
    expect(meanAbsDifference(variant.image.pixels, reference.image.pixels)).toBeLessThan(0.01);
  });

  it('an int64 [batch] timestep export runs (integer timesteps from PNDM are exact)', async () => {
    const reference = await fp32.generate(request);
    const variant = await (await load('int64-timestep', { timestepType: 'int64' })).generate(request);
    expect(meanAbsDifference(variant.image.pixels, reference.image.pixels)).toBeLessThan(0.01);
  });

  it('fp16 model, run as it is (as on a GPU), matches fp32 within 2 levels per pixel on average', async () => {
    const fp16 = await load('fp16', { precision: 'fp16', timestepType: 'float16' }, { float32OnCpu: false });
    expect(fp16.info.precision).toBe('fp16');
    const reference = await fp32.generate(request);
    const half = await fp16.generate(request);
    expect(meanAbsDifference(half.image.pixels, reference.image.pixels)).toBeLessThan(2);
  });

  it('on the CPU, an fp16 model runs as its float32 copy, made once beside each graph and made again when a graph changes', async () => {
    const widened = await load('fp16-widened', { precision: 'fp16', timestepType: 'float16', unetExternalData: 'weights.pb' });
    // The model stays fp16; it runs in float32, where its attention can be fused.
    expect(widened.info.precision).toBe('fp16');
    expect(widened.fusedAttentions.unet).toBeGreaterThan(0);
    const dir = join(root, 'fp16-widened');
    for (const component of ['text_encoder', 'unet', 'vae_decoder']) {
      expect(readdirSync(join(dir, component, '.float32')).sort()).toEqual(['model.onnx', 'model.onnx_data', 'source.json']);
    }
    const copy = join(dir, 'unet', '.float32', 'model.onnx');
    const madeAt = statSync(copy).mtimeMs;
    const reference = await fp32.generate(request);
    expect(meanAbsDifference((await widened.generate(request)).image.pixels, reference.image.pixels)).toBeLessThan(1);

    const again = await StableDiffusionPipeline.fromPretrained(dir);
    pipelines.set('fp16-widened-again', again);
    expect(statSync(copy).mtimeMs).toBe(madeAt);
    utimesSync(join(dir, 'unet', 'model.onnx'), new Date(), new Date(Date.now() + 5_000));
    pipelines.set('fp16-widened-changed', await StableDiffusionPipeline.fromPretrained(dir));
    expect(statSync(copy).mtimeMs).not.toBe(madeAt);
  });

  it('reads the VAE scaling factor from vae_decoder/config.json', async () => {
    const dir = join(root, 'scaled');
    await writeTinyModel(dir);
    writeFileSync(join(dir, 'vae_decoder', 'config.json'), JSON.stringify({ scaling_factor: 0.5 }));
    const scaled = await StableDiffusionPipeline.fromPretrained(dir);
    pipelines.set('scaled', scaled);
    const reference = await fp32.generate(request);
    const other = await scaled.generate(request);
    expect(meanAbsDifference(other.image.pixels, reference.image.pixels)).toBeGreaterThan(0.5);
  });
});

describe('attention fusion', () => {
  const request = { prompt: 'a dog wearing hat', seed: 5, steps: 3, ...SMALL };

  it('runs the U-Net attention fused on the CPU and draws what the unfused graph draws', async () => {
    expect(fp32.fusedAttentions.unet).toBeGreaterThan(0);
    const dir = join(root, 'unfused');
    await writeTinyModel(dir);
    const unfused = await StableDiffusionPipeline.fromPretrained(dir, { fuseAttention: false });
    pipelines.set('unfused', unfused);
    expect(unfused.fusedAttentions).toEqual({ unet: 0, vae: 0 });
    const fused = await fp32.generate(request);
    const reference = await unfused.generate(request);
    expect(meanAbsDifference(fused.image.pixels, reference.image.pixels)).toBeLessThan(0.01);
  });

  it('leaves an fp16 model run as it is unfused (no CPU kernel) and still generates', async () => {
    const fp16 = await load('fp16-unfused', { precision: 'fp16' }, { float32OnCpu: false });
    expect(fp16.fusedAttentions.unet).toBe(0);
    expect((await fp16.generate(request)).image.pixels).toHaveLength(32 * 32 * 3);
  });
});

describe("the VAE decoder's convolution layout", () => {
  it('is plain for a model made for 1024x1024, blocked otherwise, and both draw the same image', async () => {
    const dir = join(root, 'native-1024');
    await writeTinyModel(dir);
    const unetConfigPath = join(dir, 'unet', 'config.json');
    writeFileSync(unetConfigPath, JSON.stringify({ ...JSON.parse(readFileSync(unetConfigPath, 'utf8')), sample_size: 128 }));
    const large = await StableDiffusionPipeline.fromPretrained(dir);
    pipelines.set('native-1024', large);
    expect(large.info.nativeWidth).toBe(1024);
    expect(large.decoderLayout).toBe('plain');
    expect(fp32.decoderLayout).toBe('blocked');
    const request = { prompt: 'a dog wearing hat', seed: 8, steps: 2, ...SMALL };
    const [plain, blocked] = [await large.generate(request), await fp32.generate(request)];
    expect(meanAbsDifference(plain.image.pixels, blocked.image.pixels)).toBeLessThan(0.01);
  });
});

describe('the work space an image needs', () => {
  it('refuses a size the machine has no memory left to decode, before any step; a size decoded before costs nothing new', async () => {
    const dir = join(root, 'memory');
    await writeTinyModel(dir);
    let free = 0;
    const pipeline = await StableDiffusionPipeline.fromPretrained(dir, { freeMemory: () => free });
    pipelines.set('memory', pipeline);
    const steps: number[] = [];
    const request = { prompt: 'a dog wearing hat', seed: 3, steps: 2, ...SMALL, onStep: ({ step }: { step: number }) => steps.push(step) };
    const refusal = pipeline.generate(request);
    await expect(refusal).rejects.toBeInstanceOf(RequestError);
    await expect(refusal).rejects.toThrow(/^A 32x32 image needs about 0\.0 GB more memory than this machine has free \(0\.0 GB\): ask for a smaller one\.$/);
    expect(steps).toEqual([]);

    free = 10 ** 9;
    await pipeline.generate(request);
    free = 0;
    expect((await pipeline.generate(request)).image.width).toBe(32);
    await expect(pipeline.generate({ ...request, width: 48 })).rejects.toThrow(/^A 48x32 image needs/);
  });

  it("counts the U-Net's too, twice over when guidance runs as one batch of two", async () => {
    const dir = join(root, 'memory-unet');
    await writeTinyModel(dir);
    let free = 10 ** 9;
    const pipeline = await StableDiffusionPipeline.fromPretrained(dir, { freeMemory: () => free, sequentialGuidance: false });
    pipelines.set('memory-unet', pipeline);
    const request = { prompt: 'a dog wearing hat', seed: 3, steps: 2, ...SMALL };
    await pipeline.generate({ ...request, guidanceScale: 0 });
    free = 0;
    await pipeline.generate({ ...request, guidanceScale: 0 });
    await expect(pipeline.generate(request)).rejects.toThrow(/^A 32x32 image needs about/);
    free = 10 ** 9;
    await pipeline.generate(request);
    free = 0;
    expect((await pipeline.generate(request)).settings.guidanceScale).toBe(7.5);
  });

  it('counts the encoder too for a picture to start from', async () => {
    const raw = Uint8Array.from({ length: 32 * 32 * 3 }, (_, i) => (i * 5) % 256);
    const image = (await sharp(raw, { raw: { width: 32, height: 32, channels: 3 } }).png().toBuffer()).toString('base64');
    const dir = join(root, 'memory-img2img');
    await writeTinyModel(dir);
    let free = 10 ** 9;
    const pipeline = await StableDiffusionPipeline.fromPretrained(dir, { freeMemory: () => free });
    pipelines.set('memory-img2img', pipeline);
    const request = { prompt: 'a dog wearing hat', seed: 3, steps: 2, ...SMALL };
    await pipeline.generate(request);
    free = 0;
    await expect(pipeline.generate({ ...request, initImage: { image, strength: 1 } })).rejects.toThrow(/^A 32x32 image needs about/);
    free = 10 ** 9;
    await pipeline.generate({ ...request, initImage: { image, strength: 1 } });
    free = 0;
    expect((await pipeline.generate({ ...request, initImage: { image, strength: 1 } })).settings.strength).toBe(1);
  });

  it('an Upscale (Creative) it has no memory to redraw says so, and points to the plain Upscale', async () => {
    const raw = Uint8Array.from({ length: 32 * 32 * 3 }, (_, i) => (i * 3) % 256);
    const image = (await sharp(raw, { raw: { width: 32, height: 32, channels: 3 } }).png().toBuffer()).toString('base64');
    const dir = join(root, 'memory-upscale');
    await writeTinyModel(dir);
    const pipeline = await StableDiffusionPipeline.fromPretrained(dir, { freeMemory: () => 0 });
    pipelines.set('memory-upscale', pipeline);
    const request = { prompt: 'a dog wearing hat', seed: 3, steps: 4, guidanceScale: 7.5, width: 64, height: 64 };
    await expect(runUpscale(pipeline, undefined, { ...request, upscale: { image, factor: 2, creativeStrength: 0.35 } })).rejects.toThrow(
      /^Upscale \(Creative\) redraws the picture at 64x64, which needs about 0\.0 GB more memory than this machine has free \(0\.0 GB\): use Upscale instead\.$/,
    );
    expect((await runUpscale(pipeline, undefined, { ...request, upscale: { image, factor: 2 } })).image.width).toBe(64);
  });
});

describe('distilled few-step models', () => {
  it('recognises SD-Turbo by its trailing Euler scheduler and defaults to 1 step without guidance', async () => {
    const turbo = await load('trailing', { scheduler: { _class_name: 'EulerDiscreteScheduler', timestep_spacing: 'trailing' } });
    expect(turbo.info).toMatchObject({ isTurbo: true, defaultSteps: 1, defaultGuidance: 0, maxSteps: 4, defaultScheduler: 'Euler Trailing' });
    const output = await turbo.generate({ prompt: 'a fox', seed: 1, ...SMALL, steps: turbo.info.defaultSteps, guidanceScale: turbo.info.defaultGuidance });
    expect(output.settings).toMatchObject({ steps: 1, guidanceScale: 0, scheduler: 'Euler Trailing' });
  });

  it('recognises SD-Turbo by the repository it was pulled from', async () => {
    const dir = join(root, 'pulled');
    await writeTinyModel(dir);
    writeFileSync(join(dir, '.pull-manifest.json'), JSON.stringify({ repo: 'TensorStack/SD-Turbo-onnx' }));
    const pulled = await StableDiffusionPipeline.fromPretrained(dir);
    pipelines.set('pulled', pulled);
    expect(pulled.info).toMatchObject({ isTurbo: true, defaultSteps: 1, defaultGuidance: 0 });
    expect(fp32.info).toMatchObject({ isTurbo: false, defaultSteps: 20, defaultGuidance: 7.5 });
  });
});

describe('unusable model directories', () => {
  it('names a directory that does not exist', async () => {
    await expect(StableDiffusionPipeline.fromPretrained(join(root, 'nowhere'))).rejects.toThrow(/nowhere does not exist/);
  });

  it('names what an empty directory lacks', async () => {
    const dir = join(root, 'empty');
    mkdirSync(dir);
    await expect(StableDiffusionPipeline.fromPretrained(dir)).rejects.toThrow(/missing model_index\.json.*unet\/model\.onnx/);
  });

  it('names a missing tokenizer', async () => {
    const dir = join(root, 'no-tokenizer');
    await writeTinyModel(dir);
    rmSync(join(dir, 'tokenizer'), { recursive: true });
    await expect(StableDiffusionPipeline.fromPretrained(dir)).rejects.toThrow(/tokenizer\/vocab\.json/);
  });

  it('names a missing external weights file', async () => {
    const dir = join(root, 'no-weights');
    await writeTinyModel(dir, { unetExternalData: 'weights.pb' });
    rmSync(join(dir, 'unet', 'weights.pb'));
    await expect(StableDiffusionPipeline.fromPretrained(dir)).rejects.toThrow(/unet.*weights\.pb/);
  });
});

describe('img2img on the tiny model', () => {
  let picture: { image: string };
  const request = { prompt: 'a dog wearing hat', seed: 5, steps: 4, ...SMALL };
  beforeAll(async () => {
    const raw = Uint8Array.from({ length: 48 * 32 * 3 }, (_, i) => (i * 7) % 256);
    picture = { image: (await sharp(raw, { raw: { width: 48, height: 32, channels: 3 } }).png().toBuffer()).toString('base64') };
  });

  it('a seed reproduces the image from a picture of another size; the strength is recorded and runs its share of the steps', async () => {
    const steps: number[] = [];
    const first = await fp32.generate({ ...request, scheduler: 'Euler', initImage: { ...picture, strength: 0.5 }, onStep: ({ step }) => steps.push(step) });
    const again = await fp32.generate({ ...request, scheduler: 'Euler', initImage: { ...picture, strength: 0.5 } });
    const stronger = await fp32.generate({ ...request, scheduler: 'Euler', initImage: { ...picture, strength: 1 } });
    expect(steps).toEqual([1, 2]);
    expect(first.settings.strength).toBe(0.5);
    expect(again.image.pixels).toEqual(first.image.pixels);
    expect(meanAbsDifference(stronger.image.pixels, first.image.pixels)).toBeGreaterThan(1);
  });

  it('refuses what is not a picture, a strength outside (0, 1] and one that leaves no step', async () => {
    await expect(fp32.generate({ ...request, initImage: { image: Buffer.from('not a picture').toString('base64'), strength: 0.5 } })).rejects.toThrow('that file is not a picture (PNG, JPEG or WebP)');
    await expect(fp32.generate({ ...request, initImage: { ...picture, strength: 0 } })).rejects.toThrow('strength must be more than 0 and at most 1 (got 0)');
    await expect(fp32.generate({ ...request, initImage: { ...picture, strength: 1.5 } })).rejects.toThrow('strength must be more than 0 and at most 1');
    await expect(fp32.generate({ ...request, initImage: { ...picture, strength: 0.2 } })).rejects.toThrow('strength 0.2 of 4 steps leaves no step to run: use at least 5 steps');
  });

  it('says so when the model has no VAE encoder', async () => {
    const dir = join(root, 'no-encoder');
    await writeTinyModel(dir);
    rmSync(join(dir, 'vae_encoder'), { recursive: true });
    const pipeline = await StableDiffusionPipeline.fromPretrained(dir);
    pipelines.set('no-encoder', pipeline);
    expect(pipeline.info.imageToImage).toBe(false);
    expect(fp32.info.imageToImage).toBe(true);
    await expect(pipeline.generate({ ...request, initImage: { ...picture, strength: 0.5 } })).rejects.toThrow('no-encoder has no vae_encoder, so it cannot start from an image');
  });
});
