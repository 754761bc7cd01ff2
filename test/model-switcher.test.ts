import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OptionError } from '../src/jobs/options.ts';
import { ModelCatalog } from '../src/models/catalog.ts';
import { writeTinyModel } from '../src/tiny-model/index.ts';
import { ModelSwitcher } from '../src/worker/model-switcher.ts';
import type { PipelineThread } from '../src/worker/pipeline-thread.ts';

let modelsDir: string;
let catalog: ModelCatalog;
let switcher: ModelSwitcher;

const request = { prompt: 'a test', steps: 2, guidanceScale: 7.5, seed: '7', width: 64, height: 64 };

beforeAll(async () => {
  modelsDir = await mkdtemp(join(tmpdir(), 'imagine-switcher-'));
  await writeTinyModel(join(modelsDir, 'alpha'));
  await writeTinyModel(join(modelsDir, 'beta'), { seed: 7, scheduler: { _class_name: 'EulerAncestralDiscreteScheduler' } });
  catalog = await ModelCatalog.load(join(modelsDir, 'alpha'), modelsDir);
  switcher = new ModelSwitcher({ catalog });
});
afterAll(async () => {
  await switcher?.dispose();
  await rm(modelsDir, { recursive: true, force: true });
});

/** The switcher's current pipeline thread, to show that a switch shuts the previous one down. */
function currentThread(): PipelineThread {
  return (switcher as unknown as { thread: PipelineThread }).thread;
}

describe('ModelCatalog', () => {
  it('lists the installed models, defaults to the given one, and refuses names it does not hold', async () => {
    expect(catalog.names()).toEqual(['alpha', 'beta']);
    expect(catalog.defaultName).toBe('alpha');
    expect(catalog.resolve(undefined).name).toBe('alpha');
    expect(catalog.resolve('beta').info.defaultScheduler).toBe('Euler a');
    for (const name of ['gamma', '../alpha', join(modelsDir, 'beta'), 'constructor']) {
      expect(() => catalog.resolve(name)).toThrow(OptionError);
    }
    expect(() => catalog.resolve('../alpha')).toThrow('No model is called "../alpha"; choose one of alpha, beta.');
  });

  it('adds a default model that lives outside the models directory', async () => {
    const elsewhere = await mkdtemp(join(tmpdir(), 'imagine-elsewhere-'));
    try {
      await writeTinyModel(join(elsewhere, 'outside'));
      const withOutside = await ModelCatalog.load(join(elsewhere, 'outside'), modelsDir);
      expect(withOutside.names()).toEqual(['alpha', 'beta', 'outside']);
      expect(withOutside.resolve(undefined).dir).toBe(join(elsewhere, 'outside'));
    } finally {
      await rm(elsewhere, { recursive: true, force: true });
    }
  });
});

describe('ModelSwitcher', () => {
  it('loads the default model, switches on request, and shuts the previous pipeline down', async () => {
    expect((await switcher.ready).name).toBe('alpha');
    const first = await switcher.generate(request);
    expect(first.settings.model).toBe('alpha');
    expect(first.settings.scheduler).toBe('PNDM');

    const alphaThread = currentThread();
    const loads: string[] = [];
    const switched = await switcher.generate(request, { model: 'beta', onModelLoad: (name) => loads.push(name) });
    expect(loads).toEqual(['beta']);
    expect(switched.settings.model).toBe('beta');
    expect(switched.settings.scheduler).toBe('Euler a');
    expect(switcher.loadedModel).toBe('beta');
    await expect(alphaThread.generate(request)).rejects.toThrow('The pipeline has been shut down');

    // No reload for the model already in memory; back to the default reloads it and draws the same image.
    await switcher.generate(request, { model: 'beta', onModelLoad: (name) => loads.push(name) });
    const again = await switcher.generate(request, { onModelLoad: (name) => loads.push(name) });
    expect(loads).toEqual(['beta', 'alpha']);
    expect(Buffer.from(again.png).equals(Buffer.from(first.png))).toBe(true);
    expect(Buffer.from(switched.png).equals(Buffer.from(first.png))).toBe(false);
  });

  it('runs overlapping requests for different models one after another, each on its model', async () => {
    const models = ['beta', 'alpha', 'beta', undefined];
    const order: string[] = [];
    const results = await Promise.all(
      models.map((model, index) =>
        switcher.generate({ ...request, seed: String(index) }, { model }).then((image) => {
          order.push(image.settings.seed);
          return image;
        }),
      ),
    );
    expect(results.map((image) => image.settings.model)).toEqual(['beta', 'alpha', 'beta', 'alpha']);
    expect(order).toEqual(['0', '1', '2', '3']);
  });

  it('refuses a model that is not in the catalog without touching the loaded one', async () => {
    const before = switcher.loadedModel;
    await expect(switcher.generate(request, { model: '../beta' })).rejects.toThrow(OptionError);
    expect(switcher.loadedModel).toBe(before);
  });
});
