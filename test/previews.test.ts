import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SD1_SCHEDULER } from '../src/graphs/stable-diffusion.ts';
import { importModel } from '../src/import/import-model.ts';
import { LatentPreviewer } from '../src/pipeline/latent-preview.ts';
import { StableDiffusionPipeline } from '../src/pipeline/pipeline.ts';
import { type LatentPreview, PreviewSchedule } from '../src/pipeline/preview-schedule.ts';
import type { GenerateRequest } from '../src/pipeline/types.ts';
import type { RgbImage, VaeDecoder } from '../src/pipeline/vae.ts';
import { TorchGenerator } from '../src/random/torch-generator.ts';
import { createScheduler } from '../src/schedulers/index.ts';
import { ensureTinyModel, writeTinyModel, writeTinyTaesd } from '../src/tiny-model/index.ts';
import { fixturePath, fixturesPresent, maxAbsDiff, readFixtureJson } from './fixtures.ts';
import { expectMatch, type ReferenceCase, requestOf } from './drawing.ts';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'previews-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

function meanDifference(a: RgbImage, b: RgbImage): number {
  expect([a.width, a.height]).toEqual([b.width, b.height]);
  let sum = 0;
  for (let i = 0; i < a.pixels.length; i++) sum += Math.abs(a.pixels[i] - b.pixels[i]);
  return sum / a.pixels.length;
}

describe('the linear latent→RGB preview', () => {
  it('maps each latent pixel through SD’s factors to one RGB pixel, as [-1, 1] → 0..255', async () => {
    // 2x1 latents: pixel 0 is pure channel 0, pixel 1 pure channel 3 at -1.
    const latents = Float32Array.from([1, 0, 0, 0, 0, 0, 0, -1]);
    const image = await new LatentPreviewer(undefined, 0.18215).decode(latents, { width: 2, height: 1 });
    const level = (x: number) => Math.round((x / 2 + 0.5) * 255);
    expect([image.width, image.height]).toEqual([2, 1]);
    expect([...image.pixels]).toEqual([level(0.3512), level(0.2297), level(0.3227), level(0.212), level(0.2616), level(0.7177)]);
    const sdxl = await new LatentPreviewer(undefined, 0.13025).decode(latents, { width: 2, height: 1 });
    expect([...sdxl.pixels.subarray(0, 3)]).toEqual([level(0.392), level(0.4054), level(0.4549)]);
  });
});

describe('PreviewSchedule', () => {
  const size = { width: 2, height: 2 };

  /** Steps of `stepMs` each on a fake clock, previews costing `previewMs`; the steps that got one. */
  async function run(totalSteps: number, stepMs: number, previewMs: number, options: { everySteps: number; minIntervalMs?: number; maxShare?: number }) {
    let clock = 0;
    const shown: number[] = [];
    const schedule = new PreviewSchedule(
      {
        ...options,
        now: () => clock,
        onPreview: ({ step }) => {
          shown.push(step);
          clock += previewMs;
        },
      },
      new LatentPreviewer(undefined, 0.18215),
      size,
    );
    for (let step = 1; step <= totalSteps; step++) {
      clock += stepMs;
      await schedule.afterStep({ step, totalSteps }, new Float32Array(16));
    }
    return shown;
  }

  it('every n-th step, never after the last', async () => {
    expect(await run(10, 1000, 0, { everySteps: 1 })).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(await run(10, 1000, 0, { everySteps: 3 })).toEqual([3, 6, 9]);
    expect(await run(1, 1000, 0, { everySteps: 1 })).toEqual([]);
  });

  it('no sooner than the interval after the previous one', async () => {
    expect(await run(10, 400, 0, { everySteps: 1, minIntervalMs: 1000 })).toEqual([1, 4, 7]);
  });

  it('skips previews that would make them more than the allowed share of the denoising time', async () => {
    // 100 ms previews after 1 s steps: at 3 %, one whenever the total stays within 3 % of the steps so far (the
    // first is made to learn its cost).
    const shown = await run(20, 1000, 100, { everySteps: 1, maxShare: 0.03 });
    expect(shown).toEqual([1, 7, 10, 14, 17]);
    expect(shown.length * 100).toBeLessThanOrEqual(0.03 * 20 * 1000 + 100);
  });

  it('falls back to the linear map where the tiny decoder does not fit the budget, and remembers costs across jobs', async () => {
    const tinyDecoder = { decode: async () => ({ pixels: new Uint8Array(16 * 16 * 3), width: 16, height: 16 }) } as unknown as VaeDecoder;
    const previewer = new LatentPreviewer(tinyDecoder, 0.18215);
    const costMs = { 'tiny-decoder': 500, linear: 1 };
    /** A job of 10 steps of 1 s, previews allowed 10 % of it; the methods used, by step. */
    async function job(): Promise<string[]> {
      let clock = 0;
      const shown: string[] = [];
      const onPreview = ({ step, method }: LatentPreview) => {
        shown.push(`${step} ${method}`);
        clock += costMs[method];
      };
      const schedule = new PreviewSchedule({ everySteps: 1, maxShare: 0.1, now: () => clock, onPreview }, previewer, size);
      for (let step = 1; step <= 10; step++) {
        clock += 1000;
        await schedule.afterStep({ step, totalSteps: 10 }, new Float32Array(16));
      }
      return shown;
    }
    // The first job times the tiny decoder once (500 ms, over its 100 ms budget), then waits for the budget to catch
    // up before timing the linear map, which fits from then on.
    expect(await job()).toEqual(['1 tiny-decoder', '5 linear', '6 linear', '7 linear', '8 linear', '9 linear']);
    // The next job knows both costs: linear previews, and the tiny decoder once the budget has room for it.
    expect(await job()).toEqual(['1 linear', '2 linear', '3 linear', '4 linear', '5 linear', '6 tiny-decoder', '7 linear', '8 linear', '9 linear']);
  });

  it('steady: a preview after every step, all by one method, the tiny decoder only where it fits the share of a step', async () => {
    const tinyDecoder = { decode: async () => ({ pixels: new Uint8Array(16 * 16 * 3), width: 16, height: 16 }) } as unknown as VaeDecoder;
    const previewer = new LatentPreviewer(tinyDecoder, 0.18215);
    /** A job of 6 steps of `stepMs`, the tiny decoder costing `tinyMs` and the linear map 1 ms; the methods used, by step. */
    async function job(stepMs: number, tinyMs: number): Promise<string[]> {
      let clock = 0;
      const shown: string[] = [];
      const onPreview = ({ step, method }: LatentPreview) => {
        shown.push(`${step} ${method}`);
        clock += method === 'tiny-decoder' ? tinyMs : 1;
      };
      const schedule = new PreviewSchedule({ everySteps: 1, steady: true, maxShare: 0.05, now: () => clock, onPreview }, previewer, size);
      for (let step = 1; step <= 6; step++) {
        clock += stepMs;
        await schedule.afterStep({ step, totalSteps: 6 }, new Float32Array(16));
      }
      return shown;
    }
    // 100 ms against 5 % of 1 s steps: timed once on the first step (the cumulative budget would have skipped steps).
    expect(await job(1000, 100)).toEqual(['1 tiny-decoder', '2 linear', '3 linear', '4 linear', '5 linear']);
    // Its cost is remembered: linear from the first step.
    expect(await job(1000, 100)).toEqual(['1 linear', '2 linear', '3 linear', '4 linear', '5 linear']);
    // Where it costs 5 % of a step it is used for every frame.
    expect(await job(2000, 100)).toEqual(['1 tiny-decoder', '2 tiny-decoder', '3 tiny-decoder', '4 tiny-decoder', '5 tiny-decoder']);
  });
});

describe('previews from a generation on the tiny model', () => {
  let pipeline: StableDiffusionPipeline;
  beforeAll(async () => {
    await writeTinyModel(join(root, 'tiny'));
    pipeline = await StableDiffusionPipeline.fromPretrained(join(root, 'tiny'));
  });
  afterAll(() => pipeline?.release());

  it('arrive after the steps asked for, as linear previews at the latents’ size, and change nothing in the image', async () => {
    const request: GenerateRequest = { prompt: 'a red fox', seed: 4, steps: 6, guidanceScale: 7.5, width: 64, height: 32, scheduler: 'Euler' };
    const previews: LatentPreview[] = [];
    const withPreviews = await pipeline.generate({ ...request, preview: { everySteps: 2, maxShare: Infinity, onPreview: (preview) => void previews.push(preview) } });
    expect(previews.map(({ step, totalSteps, method }) => ({ step, totalSteps, method }))).toEqual([
      { step: 2, totalSteps: 6, method: 'linear' },
      { step: 4, totalSteps: 6, method: 'linear' },
    ]);
    expect(previews.map(({ image }) => [image.width, image.height])).toEqual([
      [8, 4],
      [8, 4],
    ]);
    expect((await pipeline.generate(request)).image.pixels).toEqual(withPreviews.image.pixels);
  });
});

describe('a pipeline loaded with a tiny decoder', () => {
  it('knows the tiny decoder’s cost from loading: no job pays for a preview that does not fit its budget', async () => {
    const taesd = join(root, 'taesd-tiny');
    await writeTinyTaesd(taesd);
    const pipeline = await StableDiffusionPipeline.fromPretrained(await ensureTinyModel(), { tinyVaeDir: taesd });
    try {
      const methods = async (maxShare: number) => {
        const made: string[] = [];
        await pipeline.generate({ prompt: 'a dog', seed: 1, steps: 3, guidanceScale: 7.5, width: 64, height: 64, scheduler: 'Euler', preview: { everySteps: 1, maxShare, onPreview: ({ method }) => void made.push(method) } });
        return made;
      };
      // No budget: the first job's first preview is the linear map, whose cost is the only one not known yet.
      const unbudgeted = await methods(0);
      expect(unbudgeted[0]).toBe('linear');
      expect(unbudgeted).not.toContain('tiny-decoder');
      expect(await methods(Infinity)).toEqual(['tiny-decoder', 'tiny-decoder']);
    } finally {
      await pipeline.release();
    }
  });
});

describe('the memory previews need', () => {
  it('counts the tiny decoder’s work space when a job has previews, and only then', async () => {
    const taesd = join(root, 'taesd-memory');
    await writeTinyTaesd(taesd);
    let free = 10 ** 9;
    const pipeline = await StableDiffusionPipeline.fromPretrained(await ensureTinyModel(), { tinyVaeDir: taesd, freeMemory: () => free });
    try {
      // Larger than the model's native 256x256, at which the tiny decoder ran when loaded.
      const request = { prompt: 'a dog', seed: 1, steps: 3, guidanceScale: 7.5, width: 288, height: 288, scheduler: 'Euler' };
      const preview = { everySteps: 1, maxShare: Infinity, onPreview: () => {} };
      await pipeline.generate(request);
      free = 0;
      await pipeline.generate(request);
      await expect(pipeline.generate({ ...request, preview })).rejects.toThrow(/^A 288x288 image needs about/);
      free = 10 ** 9;
      await pipeline.generate({ ...request, preview });
      free = 0;
      expect((await pipeline.generate({ ...request, preview })).image.width).toBe(288);
    } finally {
      await pipeline.release();
    }
  });
});

describe.runIf(fixturesPresent)('the tiny decoder (TAESD) beside the model’s own VAE', () => {
  let pipeline: StableDiffusionPipeline;
  let cases: (ReferenceCase & { id: string; scheduler: { sampler: string }; files: { u8: string } })[];
  beforeAll(async () => {
    cases = readFixtureJson('e2e2', 'taesd', 'manifest.json').cases;
    const modelsDir = join(root, 'models');
    const model = await importModel({ source: fixturePath('e2e2', 'models', 'tiny-sd-pub-torch'), name: 'sd', modelsDir });
    const taesd = await importModel({ source: fixturePath('e2e2', 'models', 'tiny-taesd-pub'), name: 'taesd', modelsDir });
    pipeline = await StableDiffusionPipeline.fromPretrained(model.dir, { tinyVaeDir: taesd.dir });
  });
  afterAll(() => pipeline?.release());

  it('decodes requests for decoder "tiny" as diffusers’ pipeline with AutoencoderTiny does, and names it', async () => {
    expect(pipeline.info.tinyDecoder).toBe('taesd');
    for (const entry of cases) {
      const request = { ...requestOf(entry), scheduler: entry.scheduler.sampler };
      const tiny = await pipeline.generate({ ...request, decoder: 'tiny' });
      expect(tiny.settings.tinyDecoder).toBe('taesd');
      expectMatch(tiny.image.pixels, join('e2e2', 'taesd', entry.files.u8));
      const full = await pipeline.generate(request);
      expect(full.settings.tinyDecoder).toBeUndefined();
      expect(meanDifference(full.image, tiny.image)).toBeGreaterThan(5);
    }
  });

  it('previews with it at the image’s size: the picture converges on the image', async () => {
    const request: GenerateRequest = { prompt: 'a dog wearing hat', seed: 3, steps: 12, guidanceScale: 7.5, width: 64, height: 64, scheduler: 'Euler', decoder: 'tiny' };
    const previews: LatentPreview[] = [];
    const { image } = await pipeline.generate({ ...request, preview: { everySteps: 1, maxShare: Infinity, onPreview: (preview) => void previews.push(preview) } });
    expect(previews.map(({ step }) => step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    expect(previews.every(({ method, image: { width, height } }) => method === 'tiny-decoder' && width === 64 && height === 64)).toBe(true);
    const first = meanDifference(previews[0].image, image);
    const last = meanDifference(previews.at(-1)!.image, image);
    // Previews show the step's prediction of the image, not its noisy latents: halfway there, it is close.
    expect(meanDifference(previews[5].image, image)).toBeLessThan(first / 4);
    expect(last).toBeLessThan(1);
  });

  it('without one, previews are linear, at the latents’ size (its factors fit real VAEs, not this random one)', async () => {
    const plain = await StableDiffusionPipeline.fromPretrained(join(root, 'models', 'sd'));
    try {
      const previews: LatentPreview[] = [];
      await plain.generate({ prompt: 'a dog', seed: 3, steps: 4, guidanceScale: 7.5, width: 64, height: 64, scheduler: 'Euler', decoder: 'tiny', preview: { everySteps: 3, maxShare: Infinity, onPreview: (preview) => void previews.push(preview) } });
      expect(previews.map(({ step, method, image }) => [step, method, image.width, image.height])).toEqual([[3, 'linear', 8, 8]]);
    } finally {
      await plain.release();
    }
  });
});

describe('what previews show: the step’s prediction of the final latents', () => {
  it.each(['DPM++ 2M', 'UniPC'])('%s gives its x0 prediction, which ends at the final latents', (name) => {
    const { scheduler } = createScheduler(name, SD1_SCHEDULER);
    scheduler.setTimesteps(5);
    const generator = new TorchGenerator(1n);
    let latents = generator.randn(16);
    let x0: Float32Array | undefined;
    for (const timestep of scheduler.timesteps) {
      const step = scheduler.step(latents.map((x) => 0.9 * x), timestep, scheduler.scaleModelInput(latents, timestep), { generator });
      x0 = step.predOriginalSample;
      latents = step.prevSample;
    }
    expect(maxAbsDiff(x0!, latents)).toBeLessThan(1e-5);
  });
});
