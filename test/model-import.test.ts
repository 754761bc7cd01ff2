import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { textEncoderParameters, unetParameters } from '../src/graphs/components.ts';
import { resolveClipTextConfig, resolveUnetConfig } from '../src/graphs/configs.ts';
import { formatParameters } from '../src/image/parameters.ts';
import { readComponentConfig } from '../src/import/component-folder.ts';
import { type ImportRequest, importModel } from '../src/import/import-model.ts';
import { SafetensorsFile, SafetensorsWriter } from '../src/models/safetensors.ts';
import { scanModels } from '../src/models/installed.ts';
import type { GenerateRequest } from '../src/pipeline/types.ts';
import { type LoraModuleSpec, writeLoraAndMergedFolder, writeRenamedLora, writeSd2SingleFile, writeSharded } from './checkpoint-files.ts';
import { draw, expectMatch, levels, referenceImage, requestOf } from './drawing.ts';
import { fixturePath, fixturesPresent, readFixtureJson } from './fixtures.ts';
import { entryPoint } from './entry-point.ts';

const runFile = promisify(execFile);
const projectRoot = resolve(fileURLToPath(import.meta.url), '..', '..');

let root: string;
let modelsDir: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'model-import-'));
  modelsDir = join(root, 'models');
  mkdirSync(modelsDir);
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const models = (...parts: string[]) => fixturePath('models', ...parts);
const e2e2Models = (...parts: string[]) => fixturePath('e2e2', 'models', ...parts);

function importInto(request: Omit<ImportRequest, 'modelsDir'>) {
  return importModel({ ...request, modelsDir });
}

describe.runIf(fixturesPresent)('imported models draw diffusers’ images', () => {
  const index = () => readFixtureJson('models', 'index.json');

  it.each(['tiny-sd15', 'tiny-sd2v'])('a diffusers folder (%s), with the model’s own scheduler', async (name) => {
    const result = await importInto({ source: models(name) });
    expect(result).toMatchObject({ name, kind: 'pipeline', dir: join(modelsDir, name) });
    for (const entry of index().models[name].pipeline) {
      const { image, settings } = await draw(result.dir, requestOf(entry));
      expect(settings.scheduler).toBe(name === 'tiny-sd15' ? 'PNDM' : 'DDIM');
      expectMatch(image.pixels, entry.image_u8);
    }
  });

  it('the single-file checkpoint (LDM names, float16) with --config', async () => {
    const { single_file: singleFile } = index();
    const result = await importInto({ source: models('tiny-sd15.safetensors'), configDir: models('tiny-sd15'), name: 'single' });
    expect(result.description).toBe('single-file checkpoint tiny-sd15.safetensors (SD 1.x)');
    const [entry] = singleFile.pipeline;
    expectMatch((await draw(result.dir, requestOf(entry))).image.pixels, entry.image_u8);
  });

  it('a kohya LoRA merged at 0.8, named in the model list and the image’s parameters', async () => {
    const { lora } = index();
    const result = await importInto({ source: models('tiny-sd15'), name: 'with-lora', loras: [{ path: models('tiny-sd15-lora.safetensors'), weight: 0.8 }] });
    expect(result.loras).toEqual([{ name: 'tiny-sd15-lora', weight: 0.8, matched: 56, unmatched: [] }]);
    const [entry] = lora.pipeline;
    const { image, settings } = await draw(result.dir, requestOf(entry));
    expectMatch(image.pixels, entry.image_u8);
    expect(settings.loras).toEqual([{ name: 'tiny-sd15-lora', weight: 0.8 }]);
    expect(formatParameters(settings)).toContain('Lora: "tiny-sd15-lora:0.8"');
    const listed = (await scanModels(modelsDir)).models.find((model) => model.name === 'with-lora');
    expect(listed?.imported?.loras).toEqual([{ name: 'tiny-sd15-lora', weight: 0.8 }]);
  });

  it('an AutoencoderTiny (TAESD): imported as a VAE, decoding at load, or merged into a model at import', async () => {
    const manifest = readFixtureJson('e2e2', 'taesd', 'manifest.json');
    const vae = await importInto({ source: e2e2Models('tiny-taesd-pub'), name: 'taesd' });
    expect(vae.kind).toBe('vae');
    expect(readdirSync(vae.dir).sort()).toEqual(['.import-manifest.json', 'vae_decoder', 'vae_encoder']);
    const scanned = await scanModels(modelsDir);
    expect(scanned.vaes.map(({ name, type }) => ({ name, type }))).toEqual([{ name: 'taesd', type: 'AutoencoderTiny' }]);
    expect(scanned.models.map((model) => model.name)).not.toContain('taesd');

    const model = await importInto({ source: e2e2Models('tiny-sd-pub-torch'), name: 'sd-pub' });
    const merged = await importInto({ source: e2e2Models('tiny-sd-pub-torch'), name: 'sd-pub-taesd', vae: e2e2Models('tiny-taesd-pub') });
    for (const entry of manifest.cases) {
      const request = { ...requestOf(entry), scheduler: entry.scheduler.sampler };
      const atLoad = await draw(model.dir, request, { vaeDir: vae.dir });
      expect(atLoad.settings.vae).toBe('taesd');
      expectMatch(atLoad.image.pixels, join('e2e2', 'taesd', entry.files.image_u8 ?? `images/${entry.id}.u8`));
      expectMatch((await draw(merged.dir, request)).image.pixels, join('e2e2', 'taesd', `images/${entry.id}.u8`));
    }
  });

  it('an SD 2.x single file: OpenCLIP names with the fused in_proj, its extra last layer left out', async () => {
    const checkpoint = join(root, 'tiny-sd2v.safetensors');
    writeSd2SingleFile(models('tiny-sd2v'), checkpoint);
    const result = await importInto({ source: checkpoint, configDir: models('tiny-sd2v'), name: 'sd2-single' });
    expect(result.description).toBe('single-file checkpoint tiny-sd2v.safetensors (SD 2.x)');
    for (const entry of index().models['tiny-sd2v'].pipeline) expectMatch((await draw(result.dir, requestOf(entry))).image.pixels, entry.image_u8);
  });

  it('a single file without a VAE: refused, or built with the one --vae gives', async () => {
    const { single_file: singleFile } = index();
    const full = SafetensorsFile.open(models('tiny-sd15.safetensors'));
    const kept = [...full.tensors.keys()].filter((key) => !key.startsWith('first_stage_model.'));
    const checkpoint = join(root, 'no-vae.safetensors');
    const writer = new SafetensorsWriter(checkpoint, kept.map((key) => ({ name: key, dtype: 'F32', shape: full.info(key).shape })));
    for (const key of kept) writer.write(key, full.readFloat32(key));
    writer.close();
    full.close();
    await expect(importInto({ source: checkpoint, configDir: models('tiny-sd15'), name: 'no-vae' })).rejects.toThrow(/no-vae\.safetensors has no VAE \(first_stage_model\.\*\): give the model one with --vae FILE/);
    const result = await importInto({ source: checkpoint, configDir: models('tiny-sd15'), name: 'no-vae', vae: models('tiny-sd15', 'vae') });
    const [entry] = singleFile.pipeline;
    expectMatch((await draw(result.dir, requestOf(entry))).image.pixels, entry.image_u8);
  });

  it('an SD-Turbo-style folder (SD 2.x with a trailing Euler scheduler) keeps its scheduler: one step, no guidance', async () => {
    const folder = join(root, 'turbo-style');
    mkdirSync(join(folder, 'scheduler'), { recursive: true });
    for (const entry of readdirSync(models('tiny-sd2v'))) {
      if (entry !== 'scheduler') symlinkSync(models('tiny-sd2v', entry), join(folder, entry));
    }
    const scheduler = { ...readFixtureJson('models', 'tiny-sd2v', 'scheduler', 'scheduler_config.json'), _class_name: 'EulerDiscreteScheduler', timestep_spacing: 'trailing' };
    writeFileSync(join(folder, 'scheduler', 'scheduler_config.json'), JSON.stringify(scheduler));
    const result = await importInto({ source: folder });
    const listed = (await scanModels(modelsDir)).models.find((model) => model.name === 'turbo-style');
    expect(listed).toMatchObject({ type: 'SD-Turbo', defaultScheduler: 'Euler Trailing', info: { defaultSteps: 1, defaultGuidance: 0, predictionType: 'v_prediction' } });
    const [entry] = index().models['tiny-sd2v'].pipeline;
    const { settings } = await draw(result.dir, { ...requestOf(entry), steps: 1, guidanceScale: 0 });
    expect(settings).toMatchObject({ scheduler: 'Euler Trailing', steps: 1, guidanceScale: 0 });
  });

  it('an SD 2.x LoRA (attention, linear proj_in / proj_out, feed-forward, LoCon convolutions, text encoder) equals the weights merged beforehand', async () => {
    const loraPath = join(root, 'sd2-lora.safetensors');
    const mergedFolder = join(root, 'sd2-merged');
    const unet = [
      'conv_in',
      'down_blocks.0.resnets.0.conv1',
      'down_blocks.0.attentions.0.proj_in',
      'down_blocks.0.attentions.0.proj_out',
      'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q',
      'mid_block.attentions.0.transformer_blocks.0.attn2.to_k',
      'up_blocks.1.attentions.1.transformer_blocks.0.ff.net.2',
    ];
    const text = ['text_model.encoder.layers.0.self_attn.q_proj', 'text_model.encoder.layers.1.mlp.fc1'];
    const kohya = (prefix: string, module: string) => `${prefix}_${module.replace(/\./g, '_')}`;
    const modules: LoraModuleSpec[] = [
      ...unet.map((module) => ({ key: kohya('lora_unet', module), component: 'unet' as const, module })),
      ...text.map((module) => ({ key: kohya('lora_te', module), component: 'text_encoder' as const, module })),
    ];
    writeLoraAndMergedFolder(models('tiny-sd2v'), modules, 0.7, loraPath, mergedFolder);
    const withLora = await importInto({ source: models('tiny-sd2v'), name: 'sd2-with-lora', loras: [{ path: loraPath, weight: 0.7 }] });
    expect(withLora.loras).toEqual([{ name: 'sd2-lora', weight: 0.7, matched: 9, unmatched: [] }]);
    const merged = await importInto({ source: mergedFolder });
    const plain = await importInto({ source: models('tiny-sd2v'), name: 'sd2-plain' });
    const [entry] = index().models['tiny-sd2v'].pipeline;
    const images: Uint8Array[] = [];
    for (const model of [withLora, merged, plain]) images.push((await draw(model.dir, requestOf(entry))).image.pixels);
    const [lora, reference, without] = images;
    expect(levels(lora, reference).max).toBeLessThanOrEqual(1);
    expect(levels(lora, without).mean).toBeGreaterThan(5);
  });

  it('sharded weights (a .safetensors.index.json and its shards)', async () => {
    const folder = join(root, 'sharded');
    mkdirSync(folder);
    for (const entry of readdirSync(models('tiny-sd15'))) {
      if (entry !== 'unet') symlinkSync(models('tiny-sd15', entry), join(folder, entry));
    }
    mkdirSync(join(folder, 'unet'));
    copyFileSync(models('tiny-sd15', 'unet', 'config.json'), join(folder, 'unet', 'config.json'));
    writeSharded(models('tiny-sd15', 'unet'), 'unet', join(folder, 'unet'), 'diffusion_pytorch_model');
    const result = await importInto({ source: folder });
    const [entry] = index().models['tiny-sd15'].pipeline;
    expectMatch((await draw(result.dir, requestOf(entry))).image.pixels, entry.image_u8);
  });

  it.each(['peft', 'diffusers-old', 'kohya-ldm'] as const)('the LoRA in the %s naming merges the same', async (naming) => {
    const { lora } = index();
    const unet = resolveUnetConfig(readComponentConfig(models('tiny-sd15', 'unet'), 'unet'));
    const text = resolveClipTextConfig(readComponentConfig(models('tiny-sd15', 'text_encoder'), 'text_encoder'));
    const modules = new Map<string, string>();
    for (const [prefix, parameters] of [['lora_unet', unetParameters(unet)], ['lora_te', textEncoderParameters(text)]] as const) {
      for (const name of parameters.keys()) {
        const module = name.replace(/\.weight$/, '');
        modules.set(`${prefix}_${module.replace(/\./g, '_')}`, module);
      }
    }
    const path = join(root, `lora-${naming}.safetensors`);
    writeRenamedLora(models('tiny-sd15-lora.safetensors'), path, naming, { unet, modules });
    const result = await importInto({ source: models('tiny-sd15'), name: `lora-${naming}`, loras: [{ path, weight: 0.8 }] });
    expect(result.loras[0]).toMatchObject({ matched: 56, unmatched: [] });
    const [entry] = lora.pipeline;
    expectMatch((await draw(result.dir, requestOf(entry))).image.pixels, entry.image_u8);
  });

  it('lists the modules of a LoRA that match nothing in the model, and merges the rest', async () => {
    const lora = SafetensorsFile.open(models('tiny-sd15-lora.safetensors'));
    const tensors = [...lora.tensors.keys()].map((key) => ({ key, shape: lora.info(key).shape, data: lora.readFloat32(key) }));
    lora.close();
    const extra = ['lora_unet_down_blocks_9_attentions_0_proj_in', 'lora_te2_text_model_encoder_layers_0_mlp_fc1'];
    for (const module of extra) {
      tensors.push({ key: `${module}.lora_down.weight`, shape: [4, 32], data: new Float32Array(128) }, { key: `${module}.lora_up.weight`, shape: [32, 4], data: new Float32Array(128) });
    }
    const path = join(root, 'lora-with-extras.safetensors');
    const writer = new SafetensorsWriter(path, tensors.map(({ key, shape }) => ({ name: key, dtype: 'F32', shape })));
    for (const { key, data } of tensors) writer.write(key, data);
    writer.close();
    const result = await importInto({ source: models('tiny-sd15'), name: 'lora-extras', loras: [{ path, weight: 0.8 }] });
    expect(result.loras).toEqual([{ name: 'lora-with-extras', weight: 0.8, matched: 56, unmatched: extra }]);
    const [entry] = index().lora.pipeline;
    expectMatch((await draw(result.dir, requestOf(entry))).image.pixels, entry.image_u8);
  });

  it('fp16 graphs (for GPUs) draw the fp32 image within float16 rounding', async () => {
    const [entry] = index().models['tiny-sd15'].pipeline;
    const result = await importInto({ source: models('tiny-sd15'), name: 'half', precision: 'fp16' });
    const { image } = await draw(result.dir, requestOf(entry));
    const { mean } = levels(image.pixels, referenceImage(entry.image_u8));
    expect(mean).toBeLessThan(2);
  });
});

/** A .safetensors file of float32 tensors named as given. */
function writeTensors(path: string, tensors: Record<string, number[]>): void {
  const entries = Object.entries(tensors);
  const writer = new SafetensorsWriter(path, entries.map(([name, shape]) => ({ name, dtype: 'F32', shape })));
  for (const [name, shape] of entries) writer.write(name, new Float32Array(shape.reduce((a, b) => a * b, 1)));
  writer.close();
}

describe.runIf(fixturesPresent)('model:import refuses bad input in one line and leaves nothing behind', () => {
  let badDir: string;
  let emptyModels: string;
  beforeAll(() => {
    badDir = join(root, 'bad');
    emptyModels = join(root, 'empty-models');
    mkdirSync(badDir);
    mkdirSync(emptyModels);
    writeFileSync(join(badDir, 'notes.safetensors'), 'this is a text file, not tensors\n');
    writeFileSync(join(badDir, 'truncated.safetensors'), readFileSync(models('tiny-sd15.safetensors')).subarray(0, 500_000));
    writeFileSync(join(badDir, 'model.ckpt'), Buffer.from([0x80, 0x02, 0x7d, 0x71]));
    writeFileSync(join(badDir, 'zipped.safetensors'), Buffer.from('PK\x03\x04 a torch.save archive'));
    writeTensors(join(badDir, 'unknown.safetensors'), { 'backbone.layer1.weight': [4, 4] });
    mkdirSync(join(badDir, 'no-vae'));
    copyFileSync(models('tiny-sd15', 'model_index.json'), join(badDir, 'no-vae', 'model_index.json'));
    for (const component of ['text_encoder', 'unet', 'tokenizer', 'scheduler']) symlinkSync(models('tiny-sd15', component), join(badDir, 'no-vae', component));
  });

  it.each<[string, () => Omit<ImportRequest, 'modelsDir'>, RegExp]>([
    ['a file that is not safetensors', () => ({ source: join(badDir, 'notes.safetensors') }), /notes\.safetensors is not a \.safetensors file/],
    ['a truncated file', () => ({ source: join(badDir, 'truncated.safetensors') }), /truncated\.safetensors is truncated: .* ends at byte \d+ but the file has 500000 bytes/],
    ['a pickle by its name', () => ({ source: join(badDir, 'model.ckpt') }), /model\.ckpt is a PyTorch pickle file: loading one can run any code .* \.safetensors/],
    ['a pickle by its bytes', () => ({ source: join(badDir, 'zipped.safetensors') }), /zipped\.safetensors is a PyTorch pickle file/],
    ['an unknown architecture', () => ({ source: join(badDir, 'unknown.safetensors') }), /unknown\.safetensors: unknown architecture/],
    ['a folder missing a component', () => ({ source: join(badDir, 'no-vae') }), /no-vae is missing components: vae/],
    ['a non-standard single file without --config', () => ({ source: models('tiny-sd15.safetensors') }), /text_encoder: .* is \[\d+, 32\] in the weights but the config makes it \[\d+, 768\].*pass --config DIR/],
    ['a LoRA for another architecture', () => ({ source: models('tiny-sd2v'), loras: [{ path: models('tiny-sd15-lora.safetensors'), weight: 1 }] }), /LoRA tiny-sd15-lora does not fit this model: .*another architecture/],
    ['a LoRA that is not one', () => ({ source: models('tiny-sd15'), loras: [{ path: models('tiny-sd15', 'vae', 'diffusion_pytorch_model.safetensors'), weight: 1 }] }), /no LoRA weights found/],
  ])('%s', async (_case, request, message) => {
    const failure = await importModel({ ...request(), modelsDir: emptyModels }).then(
      () => undefined,
      (error: Error) => error,
    );
    expect(failure?.message).toMatch(message);
    expect(failure?.message).not.toContain('\n');
    expect(readdirSync(emptyModels)).toEqual([]);
  });

  it('a name that exists, unless --force', async () => {
    await importModel({ source: e2e2Models('tiny-taesd-pub'), name: 'taken', modelsDir: emptyModels });
    const before = readFileSync(join(emptyModels, 'taken', '.import-manifest.json'), 'utf8');
    await expect(importModel({ source: e2e2Models('tiny-taesd-pub'), name: 'taken', modelsDir: emptyModels })).rejects.toThrow(/taken already exists\. Pass --force to replace it/);
    expect(readFileSync(join(emptyModels, 'taken', '.import-manifest.json'), 'utf8')).toBe(before);
    await importModel({ source: e2e2Models('tiny-taesd-pub'), name: 'taken', modelsDir: emptyModels, force: true });
    expect(readdirSync(emptyModels)).toEqual(['taken']);
  });
});

describe.runIf(fixturesPresent)('npm run model:import', () => {
  function cli(args: string[]) {
    return runFile(process.execPath, [entryPoint('src/cli/model-import.ts'), ...args], {
      cwd: projectRoot,
      env: { ...process.env, MODELS_DIR: join(root, 'cli-models') },
    }).then(
      ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
      (error: { code: number; stdout: string; stderr: string }) => error,
    );
  }

  it('imports, prints where the model went and how to use it', async () => {
    const { code, stdout, stderr } = await cli([e2e2Models('tiny-taesd-pub'), '--name', 'tiny-decoder']);
    expect(code).toBe(0);
    expect(stderr).toContain('Importing AutoencoderTiny folder tiny-taesd-pub');
    expect(stdout).toContain('Imported tiny-decoder (AutoencoderTiny folder tiny-taesd-pub)');
    expect(stdout).toContain('--vae tiny-decoder');
  });

  it.each([
    [[models('tiny-sd15'), '--precision', 'fp8'], 2, /--precision must be fp32 or fp16/],
    [[models('tiny-sd15'), '--lora', ':0.5'], 2, /--lora must be FILE or FILE:WEIGHT/],
    [['no-such-model.safetensors'], 1, /no-such-model\.safetensors does not exist/],
    [[models('tiny-sd15.safetensors')], 1, /is \[49408, 32\] in the weights but the config makes it \[49408, 768\].*pass --config DIR/],
    [[models('tiny-sd2v'), '--lora', models('tiny-sd15-lora.safetensors')], 1, /LoRA tiny-sd15-lora does not fit this model/],
    [[e2e2Models('tiny-taesd-pub'), '--name', 'tiny-decoder'], 1, /tiny-decoder already exists\. Pass --force to replace it/],
  ])('%j: one line on stderr, exit %i, nothing left behind', async (args, status, message) => {
    const { code, stderr } = await cli(args);
    expect(code).toBe(status);
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect(stderr).toMatch(message);
    expect(readdirSync(join(root, 'cli-models'))).toEqual(['tiny-decoder']);
  });
});
