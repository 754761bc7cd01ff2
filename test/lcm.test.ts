import { existsSync } from 'node:fs';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ImportEvent, importModel } from '../src/import/import-model.ts';
import { describeInstalledModel } from '../src/models/installed.ts';
import { lcmGuidanceCondition } from '../src/pipeline/lcm.ts';
import { StableDiffusionPipeline } from '../src/pipeline/pipeline.ts';
import type { GenerateRequest } from '../src/pipeline/types.ts';
import { fixturePath, fixturesPresent, maxAbsDiff, readF32, readFixtureJson } from './fixtures.ts';
import { expectMatch, type ReferenceCase, requestOf } from './drawing.ts';

interface LcmCase extends ReferenceCase {
  id: string;
  scheduler: { sampler: string };
  files: { u8: string };
  w_embedding: { dim: number };
  intermediates?: { unet_timestep_cond: { file: string } };
}

const cases: LcmCase[] = fixturesPresent ? readFixtureJson<{ cases: LcmCase[] }>('e2e2', 'lcm', 'manifest.json').cases : [];

describe.runIf(fixturesPresent)('Latent Consistency Models, as diffusers’ LatentConsistencyModelPipeline', () => {
  let root: string;
  let pipeline: StableDiffusionPipeline;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'lcm-'));
    const { dir } = await importModel({ source: fixturePath('e2e2', 'models', 'tiny-lcm-pub-torch'), modelsDir: root });
    pipeline = await StableDiffusionPipeline.fromPretrained(dir);
  });
  afterAll(async () => {
    await pipeline?.release();
    await rm(root, { recursive: true, force: true });
  });

  it('is described as an LCM: 4 steps, diffusers’ guidance 8.5, up to its distillation schedule’s 50 steps', async () => {
    const expected = { isLcm: true, defaultScheduler: 'LCM', defaultSteps: 4, defaultGuidance: 8.5, maxSteps: 50 };
    expect(pipeline.info).toMatchObject(expected);
    const installed = await describeInstalledModel(pipeline.info.dir);
    expect(installed).toMatchObject({ type: 'LCM', info: expected });
  });

  it('embeds guidance − 1 as the U-Net’s timestep_cond', () => {
    const [first] = cases;
    const reference = readF32('e2e2', 'lcm', first.intermediates!.unet_timestep_cond.file);
    // The angles reach 7500 rad: float32 rounding of w·1000·f alone moves sin/cos by up to ~2e-4.
    expect(maxAbsDiff(lcmGuidanceCondition(first.guidance, first.w_embedding.dim), reference)).toBeLessThan(2e-4);
    expect(maxAbsDiff(lcmGuidanceCondition(first.guidance, 17).subarray(0, 16), reference)).toBeLessThan(2e-4);
    expect(lcmGuidanceCondition(first.guidance, 17)[16]).toBe(0);
  });

  it.each(cases)('$id: the reference image', async (entry) => {
    const { image, settings } = await pipeline.generate(requestOf(entry));
    expect(settings.scheduler).toBe(entry.scheduler.sampler);
    expectMatch(image.pixels, join('e2e2', 'lcm', entry.files.u8));
  });

  it('runs without the unconditional batch: a negative prompt changes nothing, the guidance does', async () => {
    const request = { ...requestOf(cases[0]), steps: 2 };
    const plain = await pipeline.generate(request);
    expect((await pipeline.generate({ ...request, negativePrompt: 'a cat' })).image.pixels).toEqual(plain.image.pixels);
    expect((await pipeline.generate({ ...request, guidanceScale: 2 })).image.pixels).not.toEqual(plain.image.pixels);
  });
});

describe.runIf(fixturesPresent)('LCM-LoRA and --scheduler at import', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'lcm-lora-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  async function draw(dir: string, request: GenerateRequest) {
    const pipeline = await StableDiffusionPipeline.fromPretrained(dir);
    try {
      return { info: pipeline.info, output: await pipeline.generate(request) };
    } finally {
      await pipeline.release();
    }
  }

  it('an LCM-LoRA makes the model sample with LCM, as diffusers’ recipe (LCMScheduler from the model’s config)', async () => {
    const lora = fixturePath('models', 'tiny-sd15-lora.safetensors');
    const lcmLora = join(root, 'lcm-lora-tiny.safetensors');
    await copyFile(lora, lcmLora);
    const events: ImportEvent[] = [];
    const merged = await importModel({ source: fixturePath('models', 'tiny-sd15'), name: 'lcm', modelsDir: root, loras: [{ path: lcmLora, weight: 1 }] }, { onEvent: (event) => events.push(event) });
    expect(events.find((event) => event.type === 'plan')).toMatchObject({ notes: expect.arrayContaining([expect.stringMatching(/^LCM-LoRA lcm-lora-tiny\.safetensors: the model samples with LCM/)]) });
    const plain = await importModel({ source: fixturePath('models', 'tiny-sd15'), name: 'plain', modelsDir: root, loras: [{ path: lora, weight: 1 }] });

    const request = { prompt: 'a dog wearing hat', seed: 5, steps: 4, guidanceScale: 1, width: 64, height: 64 };
    const lcm = await draw(merged.dir, request);
    expect(lcm.info).toMatchObject({ isLcm: true, defaultScheduler: 'LCM', defaultSteps: 4, defaultGuidance: 1 });
    expect((await describeInstalledModel(merged.dir)).type).toBe('SD 1.x');
    expect(lcm.output.settings.scheduler).toBe('LCM');
    const recipe = await draw(plain.dir, { ...request, scheduler: 'LCM' });
    expect(recipe.info.defaultScheduler).toBe('PNDM');
    expect(lcm.output.image.pixels).toEqual(recipe.output.image.pixels);
  });

  it('--scheduler names the model’s own scheduler; an unknown one is refused before anything is written', async () => {
    const result = await importModel({ source: fixturePath('models', 'tiny-sd15'), name: 'karras', modelsDir: root, scheduler: 'DPM++ 2M Karras' });
    const { info } = await draw(result.dir, { prompt: 'x', seed: 1, steps: 2, guidanceScale: 7.5, width: 64, height: 64 });
    expect(info.defaultScheduler).toBe('DPM++ 2M Karras');
    await expect(importModel({ source: fixturePath('models', 'tiny-sd15'), name: 'nope', modelsDir: root, scheduler: 'Warp drive' })).rejects.toThrow(/Unknown scheduler "Warp drive"/);
    expect(existsSync(join(root, 'nope'))).toBe(false);
  });
});
