import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importModel } from '../src/import/import-model.ts';
import { lcmGuidanceCondition } from '../src/pipeline/lcm.ts';
import { StableDiffusionPipeline } from '../src/pipeline/pipeline.ts';
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
