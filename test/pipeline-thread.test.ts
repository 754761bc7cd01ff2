import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseParameters } from '../src/image/parameters.ts';
import { readPngParameters } from '../src/image/png.ts';
import { writeTinyModel } from '../src/tiny-model/index.ts';
import { PipelineThread } from '../src/worker/pipeline-thread.ts';

const root = mkdtempSync(join(tmpdir(), 'imagine-thread-'));
const modelDir = join(root, 'tiny');
let thread: PipelineThread;

beforeAll(async () => {
  await writeTinyModel(modelDir);
  thread = PipelineThread.start({ modelDir });
});

afterAll(async () => {
  await thread?.dispose();
  rmSync(root, { recursive: true, force: true });
});

const SMALL_REQUEST = { prompt: 'x', steps: 1, guidanceScale: 7.5, width: 32, height: 32, seed: 1 };

describe('PipelineThread', () => {
  it('loads the model in its thread and reports what it offers', async () => {
    expect(await thread.ready).toMatchObject({ name: 'tiny', sizeMultiple: 16, defaultScheduler: 'PNDM' });
  });

  it('returns a PNG whose parameters chunk re-creates the generation', async () => {
    const steps: number[] = [];
    const result = await thread.generate(
      { prompt: 'a dog wearing hat', negativePrompt: 'cat', seed: '42', steps: 3, guidanceScale: 7.5, width: 48, height: 32, scheduler: 'Euler a' },
      { onStep: ({ step, totalSteps }) => steps.push(step / totalSteps) },
    );
    expect(steps).toEqual([1 / 3, 2 / 3, 1]);
    expect(await sharp(result.png).metadata()).toMatchObject({ format: 'png', width: 48, height: 32 });
    const parameters = readPngParameters(result.png)!;
    expect(parameters).toBe(result.parameters);
    expect(parseParameters(parameters)).toEqual({ ...result.settings });
    expect(result.settings).toMatchObject({ prompt: 'a dog wearing hat', negativePrompt: 'cat', seed: '42', steps: 3, scheduler: 'Euler a', model: 'tiny' });
  });

  it('sends previews as small JPEGs, each before the next step and all before the image', async () => {
    const events: string[] = [];
    const jpegs: Uint8Array[] = [];
    const result = await thread.generate(
      { ...SMALL_REQUEST, steps: 5, width: 64, height: 32, scheduler: 'Euler' },
      {
        onStep: ({ step }) => events.push(`step ${step}`),
        preview: {
          everySteps: 2,
          // No budget: on the tiny model a JPEG takes longer than a step.
          maxShare: Infinity,
          onPreview: ({ step, totalSteps, jpeg }) => {
            events.push(`preview ${step}/${totalSteps}`);
            jpegs.push(jpeg);
          },
        },
      },
    );
    expect(events).toEqual(['step 1', 'step 2', 'preview 2/5', 'step 3', 'step 4', 'preview 4/5', 'step 5']);
    // Linear previews are 8x4 pixels here: scaled up so that Discord shows them at a readable size.
    for (const jpeg of jpegs) expect(await sharp(jpeg).metadata()).toMatchObject({ format: 'jpeg', width: 384, height: 192 });
    expect(result.settings.steps).toBe(5);
  });

  it('passes the pipeline error through and keeps serving', async () => {
    await expect(thread.generate({ ...SMALL_REQUEST, width: 50 })).rejects.toThrow(/multiple of 16/);
    const result = await thread.generate(SMALL_REQUEST);
    expect(result.settings.seed).toBe('1');
  });

  it('cancels a running generation through its AbortSignal', async () => {
    const controller = new AbortController();
    const run = thread.generate(
      { ...SMALL_REQUEST, prompt: 'slow', steps: 50, width: 64, height: 64 },
      { signal: controller.signal, onStep: ({ step }) => step === 2 && controller.abort() },
    );
    await expect(run).rejects.toMatchObject({ name: 'AbortError' });
    await expect(thread.generate(SMALL_REQUEST, { signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' });
  });

  it('reports a model that cannot load, on ready and on generate', async () => {
    const broken = PipelineThread.start({ modelDir: join(root, 'missing') });
    await expect(broken.ready).rejects.toThrow(/does not exist/);
    await expect(broken.generate(SMALL_REQUEST)).rejects.toThrow(/does not exist/);
    await broken.dispose();
  });
});
