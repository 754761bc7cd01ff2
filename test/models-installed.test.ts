import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import ort from 'onnxruntime-node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TINY_MODEL_NOTICE, resolveModelDir } from '../src/models/default-model.ts';
import { describeInstalledModel, listInstalledModels, resolveInstalledModel, scanModels } from '../src/models/installed.ts';
import { readOnnxOutline } from '../src/pipeline/onnx-outline.ts';
import { StableDiffusionPipeline } from '../src/pipeline/pipeline.ts';
import { writeTinyModel } from '../src/tiny-model/index.ts';
import { entryPoint } from './entry-point.ts';

const projectRoot = resolve(fileURLToPath(import.meta.url), '..', '..');
const root = mkdtempSync(join(tmpdir(), 'imagine-installed-'));
const modelsDir = join(root, 'models');
const ELEMENT_TYPES: Record<number, string> = { 1: 'float32', 6: 'int32', 7: 'int64', 10: 'float16' };

/** Bytes of the regular files under `dir`, as find(1) counts them. */
function bytesOnDisk(dir: string): number {
  return execFileSync('find', [dir, '-type', 'f', '-printf', '%s\\n'], { encoding: 'utf8' })
    .trim()
    .split('\n')
    .reduce((sum, line) => sum + Number(line), 0);
}

/** Turns a tiny model into one that does not announce itself as the test model. */
function unmark(dir: string): void {
  const indexPath = join(dir, 'model_index.json');
  const index = JSON.parse(readFileSync(indexPath, 'utf8'));
  delete index._imagine_bot_tiny;
  writeFileSync(indexPath, JSON.stringify(index));
}

beforeAll(async () => {
  await writeTinyModel(join(modelsDir, 'tiny-fp32'), { unetExternalData: 'model.onnx_data' });
  await writeTinyModel(join(modelsDir, 'tiny-fp16'), { precision: 'fp16', timestepType: 'float16' });
  await writeTinyModel(join(modelsDir, 'broken'));
  rmSync(join(modelsDir, 'broken', 'unet', 'model.onnx'));
  await writeTinyModel(join(modelsDir, '.staged.partial'));
  writeFileSync(join(modelsDir, 'README.md'), 'models go here\n');
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('readOnnxOutline', () => {
  it.each(['tiny-fp32', 'tiny-fp16'])('reads the U-Net inputs of %s as onnxruntime declares them', async (name) => {
    const path = join(modelsDir, name, 'unet', 'model.onnx');
    const session = await ort.InferenceSession.create(path);
    const declared = session.inputMetadata.map((meta) => ({ name: meta.name, type: meta.isTensor ? meta.type : '?', shape: meta.isTensor ? meta.shape : [] }));
    await session.release();
    const outline = await readOnnxOutline(path);
    const read = outline.inputs.map((input) => ({ name: input.name, type: ELEMENT_TYPES[input.elemType], shape: input.shape }));
    expect(read).toEqual(declared);
    // As many stride-2 convolutions as the config's resolutions less one.
    const config = JSON.parse(readFileSync(join(modelsDir, name, 'unet', 'config.json'), 'utf8'));
    expect(outline.stridedNodes).toBe(config.block_out_channels.length - 1);
    expect(outline.float16Weights).toBe(name === 'tiny-fp16');
  });

  it('without unet/config.json, takes the size rule from the graph: a two-resolution U-Net draws 96x64', async () => {
    const dir = join(root, 'no-unet-config');
    await writeTinyModel(dir);
    rmSync(join(dir, 'unet', 'config.json'));
    expect((await describeInstalledModel(dir)).info.sizeMultiple).toBe(16);
    const pipeline = await StableDiffusionPipeline.fromPretrained(dir);
    try {
      expect(pipeline.info.sizeMultiple).toBe(16);
      const output = await pipeline.generate({ prompt: 'wide', steps: 1, guidanceScale: 7.5, width: 96, height: 64, seed: 1 });
      expect([output.image.width, output.image.height]).toEqual([96, 64]);
    } finally {
      await pipeline.release();
    }
  });

  it('names the file it cannot read', async () => {
    const path = join(root, 'garbage.onnx');
    writeFileSync(path, Buffer.from([0x3a, 0xff, 0xff, 0xff, 0xff, 0x0f]));
    await expect(readOnnxOutline(path)).rejects.toThrow(`Cannot read the graph of ${path}`);
  });
});

describe('installed models', () => {
  it('lists each usable model with what the pipeline reports once it is loaded', async () => {
    const models = await listInstalledModels(modelsDir);
    expect(models.map((model) => model.name)).toEqual(['tiny-fp16', 'tiny-fp32']);
    for (const model of models) {
      // Before loading: on the CPU, an fp16 model's first load adds its float32 copy.
      const bytes = bytesOnDisk(model.dir);
      const pipeline = await StableDiffusionPipeline.fromPretrained(model.dir);
      const { info } = pipeline;
      await pipeline.release();
      expect(model).toMatchObject({
        type: 'tiny test model',
        precision: info.precision,
        defaultScheduler: info.defaultScheduler,
        nativeWidth: info.nativeWidth,
        nativeHeight: info.nativeHeight,
        bytes,
      });
      expect(model.info).toEqual(info);
    }
    expect(models.map((model) => model.precision)).toEqual(['fp16', 'fp32']);
  });

  it('says why a directory is not a usable model', async () => {
    const { skipped } = await scanModels(modelsDir);
    expect(skipped).toEqual([{ name: 'broken', dir: join(modelsDir, 'broken'), reason: expect.stringMatching(/missing unet\/model\.onnx/) }]);
  });

  it.each([
    ['SD 1.x', 'plain', {}],
    ['SD 2.x', 'plain-v2', { padToken: '!' as const }],
    ['SD-Turbo', 'plain-turbo', { padToken: '!' as const }],
  ])('tells %s apart from the files', async (type, name, options) => {
    const dir = join(root, 'typed', name);
    await writeTinyModel(dir, options);
    unmark(dir);
    expect((await listInstalledModels(join(root, 'typed'))).find((model) => model.name === name)?.type).toBe(type);
  });

  it('resolves installed model names and nothing else', async () => {
    expect((await resolveInstalledModel('tiny-fp32', modelsDir)).dir).toBe(join(modelsDir, 'tiny-fp32'));
    for (const name of ['../models/tiny-fp32', join(modelsDir, 'tiny-fp32'), 'tiny-fp32/unet', '.staged.partial', '']) {
      await expect(resolveInstalledModel(name, modelsDir)).rejects.toThrow(/is not the name of an installed model/);
    }
    await expect(resolveInstalledModel('sd-turbo', modelsDir)).rejects.toThrow('No installed model is called "sd-turbo". Installed: tiny-fp16, tiny-fp32.');
    await expect(resolveInstalledModel('broken', modelsDir)).rejects.toThrow(/Model "broken" cannot be used: .*missing unet\/model\.onnx/);
  });
});

describe('resolveModelDir', () => {
  const saved = process.env.SD_MODEL_DIR;
  afterEach(() => {
    if (saved === undefined) delete process.env.SD_MODEL_DIR;
    else process.env.SD_MODEL_DIR = saved;
  });

  it('takes --model, then SD_MODEL_DIR, then the only installed model, else the tiny model with a note', async () => {
    delete process.env.SD_MODEL_DIR;
    const single = join(root, 'single');
    mkdirSync(single);
    expect(await resolveModelDir(undefined, single)).toEqual({ dir: expect.stringMatching(/\.tiny$/), notice: TINY_MODEL_NOTICE });
    // Asked for by name, the tiny model is a choice, not a stand-in: no notice.
    expect(await resolveModelDir('tiny', single)).toEqual({ dir: expect.stringMatching(/\.tiny$/) });

    await writeTinyModel(join(single, 'only'));
    expect(await resolveModelDir(undefined, single)).toEqual({ dir: join(single, 'only') });
    expect(await resolveModelDir('only', single)).toEqual({ dir: join(single, 'only') });

    const several = await resolveModelDir(undefined, modelsDir);
    expect(several.dir).toMatch(/\.tiny$/);
    expect(several.notice).toMatch(/Several models are installed \(tiny-fp16, tiny-fp32\)/);

    process.env.SD_MODEL_DIR = join(modelsDir, 'tiny-fp16');
    expect(await resolveModelDir(undefined, single)).toEqual({ dir: join(modelsDir, 'tiny-fp16') });
    expect(await resolveModelDir(join(modelsDir, 'tiny-fp32'), single)).toEqual({ dir: join(modelsDir, 'tiny-fp32') });
    await expect(resolveModelDir('nowhere', single)).rejects.toThrow(/Model directory .*nowhere does not exist/);
  });
});

describe('model:list', () => {
  it('prints one row per model, the skipped ones, and the default', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [entryPoint('src/cli/model-list.ts')], {
      cwd: projectRoot,
      env: { ...process.env, MODELS_DIR: modelsDir, SD_MODEL_DIR: join(modelsDir, 'tiny-fp32') },
    });
    const lines = stdout.split('\n');
    expect(lines[0]).toMatch(/^\s+name\s+type\s+precision\s+size\s+scheduler\s+native size\s+source$/);
    expect(lines[1]).toMatch(/^\s+tiny-fp16\s+tiny test model\s+fp16\s+[\d.]+ (kB|MB)\s+PNDM\s+256x256$/);
    expect(lines[2]).toMatch(/^\*\s+tiny-fp32\s+tiny test model\s+fp32\s+[\d.]+ (kB|MB)\s+PNDM\s+256x256$/);
    expect(stdout).toMatch(/skipped .*broken: .*missing unet\/model\.onnx/);
    expect(stdout).toContain('Default: tiny-fp32 (SD_MODEL_DIR)');
  });
});
