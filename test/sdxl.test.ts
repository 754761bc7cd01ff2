import { mkdirSync, readFileSync, readdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeModel, GraphBuilder, intsAttr } from '../src/graphs/onnx-graph.ts';
import { importModel } from '../src/import/import-model.ts';
import { scanModels } from '../src/models/installed.ts';
import { pullModel } from '../src/models/pull.ts';
import { SafetensorsFile } from '../src/models/safetensors.ts';
import { ONNX_FLOAT, ONNX_FLOAT16, readOnnxOutline } from '../src/pipeline/onnx-outline.ts';
import { StableDiffusionPipeline } from '../src/pipeline/pipeline.ts';
import { PromptEncoder } from '../src/pipeline/prompt-encoder.ts';
import { SDXL_TEXT_ENCODERS } from '../src/pipeline/sdxl-conditioning.ts';
import { TextEncoder } from '../src/pipeline/text-encoder.ts';
import { ClipTokenizer } from '../src/pipeline/tokenizer.ts';
import type { GenerateRequest } from '../src/pipeline/types.ts';
import { VaeEncoder } from '../src/pipeline/vae-encoder.ts';
import { MAX_PROMPT_CHUNKS } from '../src/prompt/prompt-tokens.ts';
import { writeLoraAndMergedFolder, writeSdxlSingleFile } from './checkpoint-files.ts';
import { draw, expectMatch, levels, referenceImage } from './drawing.ts';
import { OLIVE_LAYOUT, OPTIMUM_LAYOUT, writeSdxlExport } from './export-layouts.ts';
import { startMockHub } from './mock-hub/server.ts';
import { fixturePath, fixturesPresent, maxAbsDiff, readF32, readFixtureJson } from './fixtures.ts';
import { safetensorsBytes } from './safetensors-file.ts';

const FOLDER = 'tiny-sdxl-pub-torch';

interface SdxlCase {
  id: string;
  prompt: string;
  negative_prompt: string | null;
  scheduler: { sampler: string; source: 'model' | 'explicit'; overrides: Record<string, unknown> };
  steps: number;
  guidance: number;
  seed: number;
  width: number;
  height: number;
}

const cases = (): SdxlCase[] => readFixtureJson('e2e2', 'sdxl', 'manifest.json').cases;
const sourceFolder = (...parts: string[]) => fixturePath('e2e2', 'models', FOLDER, ...parts);

/** A case as a request: the model's own scheduler, or the named one (Euler with trailing spacing is "Euler Trailing"). */
function requestOf(entry: SdxlCase): GenerateRequest {
  const { sampler, source, overrides } = entry.scheduler;
  const scheduler = source === 'model' ? undefined : overrides.timestep_spacing === 'trailing' ? `${sampler} Trailing` : sampler;
  return {
    prompt: entry.prompt,
    ...(entry.negative_prompt !== null ? { negativePrompt: entry.negative_prompt } : {}),
    ...(scheduler ? { scheduler } : {}),
    seed: entry.seed,
    steps: entry.steps,
    guidanceScale: entry.guidance,
    width: entry.width,
    height: entry.height,
  };
}

/** The case's reference image. */
const referenceOf = (entry: SdxlCase) => join('e2e2', 'sdxl', 'images', `${entry.id}.u8`);

describe.runIf(fixturesPresent)('SDXL: imported models draw diffusers’ StableDiffusionXLPipeline images', () => {
  let root: string;
  let modelsDir: string;
  let imported: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'sdxl-'));
    modelsDir = join(root, 'models');
    mkdirSync(modelsDir);
    imported = (await importModel({ source: sourceFolder(), modelsDir })).dir;
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('a diffusers folder: square and not, with a negative prompt and without (zeros), and Turbo-style without guidance', async () => {
    expect(readdirSync(imported).sort()).toEqual([
      '.import-manifest.json',
      'model_index.json',
      'scheduler',
      'text_encoder',
      'text_encoder_2',
      'tokenizer',
      'tokenizer_2',
      'unet',
      'vae_decoder',
      'vae_encoder',
    ]);
    const listed = (await scanModels(modelsDir)).models.find((model) => model.dir === imported);
    expect(listed).toMatchObject({ type: 'SDXL', precision: 'fp32', defaultScheduler: 'Euler', nativeWidth: 256, nativeHeight: 256 });
    for (const entry of cases()) {
      const { image, settings } = await draw(imported, requestOf(entry));
      expect(settings).toMatchObject({ width: entry.width, height: entry.height, negativePrompt: entry.negative_prompt ?? '' });
      expectMatch(image.pixels, referenceOf(entry));
    }
  });

  it('img2img, as diffusers’ StableDiffusionXLImg2ImgPipeline: SDXL’s VAE scaling factor, and at strength 1 from a picture encoded to zeros exactly text-to-image’s denoising', async () => {
    // Euler over trailing timesteps starts text-to-image at σ_max · noise, and img2img at latents + σ_max · noise:
    // with an encoder that makes zeros of any picture (deterministic, so the noise is the generator's first draw in
    // both), strength 1 must draw the text-to-image picture, guidance, pooled embeddings and size ids included.
    const zeroEncoder = join(root, 'zero-encoder');
    mkdirSync(join(zeroEncoder, 'vae_encoder'), { recursive: true });
    for (const entry of readdirSync(imported)) if (entry !== 'vae_encoder') symlinkSync(join(imported, entry), join(zeroEncoder, entry));
    symlinkSync(join(imported, 'vae_encoder', 'config.json'), join(zeroEncoder, 'vae_encoder', 'config.json'));
    writeFileSync(join(zeroEncoder, 'vae_encoder', 'model.onnx'), zeroLatentsEncoder());

    const [, withNegative] = cases();
    const request = { ...requestOf(withNegative), scheduler: 'Euler Trailing', steps: 4 };
    const picture = (await sharp(referenceImage(referenceOf(withNegative)), { raw: { width: request.width, height: request.height, channels: 3 } }).png().toBuffer()).toString('base64');
    const [zeros, real] = await Promise.all([StableDiffusionPipeline.fromPretrained(zeroEncoder), StableDiffusionPipeline.fromPretrained(imported)]);
    try {
      expect(real.info.imageToImage).toBe(true);
      const textToImage = await zeros.generate(request);
      const fromZeros = await zeros.generate({ ...request, initImage: { image: picture, strength: 1 } });
      expect(fromZeros.settings.strength).toBe(1);
      expect(levels(fromZeros.image.pixels, textToImage.image.pixels).max).toBeLessThanOrEqual(1);

      const fromPicture = await real.generate({ ...request, initImage: { image: picture, strength: 0.5 } });
      expect(fromPicture.settings).toMatchObject({ strength: 0.5, width: request.width, height: request.height });
      expect(levels(fromPicture.image.pixels, textToImage.image.pixels).mean).toBeGreaterThan(1);
    } finally {
      await Promise.all([zeros.release(), real.release()]);
    }
    const encoder = (await VaeEncoder.load(imported, { executionProvider: 'cpu', clock: { runMs: 0 }, fuseAttention: true }))!;
    expect(encoder.scalingFactor).toBe(0.13025);
    await encoder.release();
  });

  it('encodes an empty negative prompt when the model says so (force_zeros_for_empty_prompt false)', async () => {
    const encodesEmpty = join(root, 'encodes-empty');
    mkdirSync(encodesEmpty);
    for (const entry of readdirSync(imported)) if (entry !== 'model_index.json') symlinkSync(join(imported, entry), join(encodesEmpty, entry));
    const index = JSON.parse(readFileSync(join(imported, 'model_index.json'), 'utf8'));
    writeFileSync(join(encodesEmpty, 'model_index.json'), JSON.stringify({ ...index, force_zeros_for_empty_prompt: false }));
    const [withoutNegative] = cases();
    const { mean } = levels((await draw(encodesEmpty, requestOf(withoutNegative))).image.pixels, referenceImage(referenceOf(withoutNegative)));
    expect(mean).toBeGreaterThan(1);
  });

  it('a single file with SGM names (conditioner.embedders.*, model.diffusion_model.*) and --config', async () => {
    const checkpoint = join(root, 'tiny-sdxl.safetensors');
    writeSdxlSingleFile(sourceFolder(), checkpoint);
    const result = await importModel({ source: checkpoint, configDir: sourceFolder(), name: 'sdxl-single', modelsDir });
    expect(result.description).toBe('single-file checkpoint tiny-sdxl.safetensors (SDXL)');
    for (const entry of cases().slice(0, 2)) expectMatch((await draw(result.dir, requestOf(entry))).image.pixels, referenceOf(entry));
  });

  it('fp16 graphs (for GPUs), the VAE kept in fp32 as diffusers upcasts SDXL’s (force_upcast), draw the image within float16 rounding', async () => {
    const half = await importModel({ source: sourceFolder(), name: 'half', precision: 'fp16', modelsDir });
    const elementType = async (component: string, input: string) => (await readOnnxOutline(join(half.dir, component, 'model.onnx'))).inputs.find(({ name }) => name === input)?.elemType;
    expect(await elementType('unet', 'sample')).toBe(ONNX_FLOAT16);
    expect(await elementType('vae_decoder', 'latent_sample')).toBe(ONNX_FLOAT);
    expect(await elementType('vae_encoder', 'sample')).toBe(ONNX_FLOAT);
    const [entry] = cases();
    const { mean } = levels((await draw(half.dir, requestOf(entry))).image.pixels, referenceImage(referenceOf(entry)));
    expect(mean).toBeLessThan(2);
  });

  it('a kohya SDXL LoRA (lora_te1, lora_te2, lora_unet in diffusers and LDM names) merges as by hand', async () => {
    const modules = [
      { key: 'lora_te1_text_model_encoder_layers_0_self_attn_q_proj', component: 'text_encoder', module: 'text_model.encoder.layers.0.self_attn.q_proj' },
      { key: 'lora_te2_text_model_encoder_layers_1_mlp_fc1', component: 'text_encoder_2', module: 'text_model.encoder.layers.1.mlp.fc1' },
      { key: 'lora_unet_down_blocks_1_attentions_0_transformer_blocks_1_attn2_to_k', component: 'unet', module: 'down_blocks.1.attentions.0.transformer_blocks.1.attn2.to_k' },
      { key: 'lora_unet_middle_block_1_proj_in', component: 'unet', module: 'mid_block.attentions.0.proj_in' },
      { key: 'lora_unet_input_blocks_0_0', component: 'unet', module: 'conv_in' },
    ] as const;
    const lora = join(root, 'sdxl-lora.safetensors');
    const mergedFolder = join(root, 'merged-by-hand');
    writeLoraAndMergedFolder(sourceFolder(), modules, 0.7, lora, mergedFolder);
    const withLora = await importModel({ source: sourceFolder(), name: 'with-lora', modelsDir, loras: [{ path: lora, weight: 0.7 }] });
    expect(withLora.loras).toEqual([{ name: 'sdxl-lora', weight: 0.7, matched: modules.length, unmatched: [] }]);
    const byHand = await importModel({ source: mergedFolder, name: 'by-hand', modelsDir });
    const [entry] = cases();
    const { image, settings } = await draw(withLora.dir, requestOf(entry));
    expect(settings.loras).toEqual([{ name: 'sdxl-lora', weight: 0.7 }]);
    expect(levels(image.pixels, (await draw(byHand.dir, requestOf(entry))).image.pixels).max).toBeLessThanOrEqual(1);
    expect(levels(image.pixels, referenceImage(referenceOf(entry))).mean).toBeGreaterThan(2);
  });

  it('AUTOMATIC1111’s emphasis on SDXL: each text encoder’s states weighted and their mean restored on their own, then joined', async () => {
    const [entry] = cases();
    const components = (name: string) => readF32('e2e2', 'sdxl', 'intermediates', entry.id, 'components', `prompt_${name}.f32`);
    // A1111 (sd_hijack_clip.process_tokens), on each encoder's penultimate states as PyTorch computed them:
    // z·multipliers, then scaled back to the mean z had. "a dog (wearing:1.3) hat": "wearing" is token 3.
    const weighted = ['text_encoder', 'text_encoder_2'].map((encoder) => {
      const states = components(`${encoder}_penultimate_hidden_state`);
      const width = states.length / 77;
      const out = states.map((value, index) => (Math.floor(index / width) === 3 ? value * 1.3 : value));
      const mean = (values: Float32Array) => values.reduce((sum, value) => sum + value, 0) / values.length;
      const restore = mean(states) / mean(out);
      return { width, data: out.map((value) => value * restore) };
    });
    const expected = new Float32Array(77 * (weighted[0].width + weighted[1].width));
    for (let token = 0; token < 77; token++) {
      let offset = token * (weighted[0].width + weighted[1].width);
      for (const { width, data } of weighted) {
        expected.set(data.subarray(token * width, (token + 1) * width), offset);
        offset += width;
      }
    }

    const loadOptions = { executionProvider: 'cpu', clock: { runMs: 0 }, fuseAttention: false } as const;
    const parts = [];
    for (const role of SDXL_TEXT_ENCODERS) {
      parts.push({ tokenizer: await ClipTokenizer.fromDirectory(join(imported, role.tokenizer)), textEncoder: await TextEncoder.load(imported, loadOptions, role) });
    }
    try {
      const prompts = new PromptEncoder(parts, MAX_PROMPT_CHUNKS);
      const plain = await prompts.encode(prompts.tokenize(entry.prompt, 'a1111', 'prompt'));
      expect(maxAbsDiff(plain.data, readF32('e2e2', 'sdxl', 'intermediates', entry.id, 'components', 'prompt_embeds.f32'))).toBeLessThan(1e-4);
      const emphasis = await prompts.encode(prompts.tokenize('a dog (wearing:1.3) hat', 'a1111', 'prompt'));
      expect(emphasis.width).toBe(weighted[0].width + weighted[1].width);
      expect(maxAbsDiff(emphasis.data, expected)).toBeLessThan(1e-4);
      expect(maxAbsDiff(emphasis.data, plain.data)).toBeGreaterThan(1e-2);
      // The pooled embedding is the unweighted first chunk's, as A1111 takes it.
      expect(maxAbsDiff(emphasis.pooled!, components('text_encoder_2_text_embeds'))).toBeLessThan(1e-4);
    } finally {
      for (const { textEncoder } of parts) await textEncoder.release();
    }
  });

  it('an SDXL embedding: its clip_l vectors go to the first text encoder, its clip_g vectors to the second', async () => {
    const tokenizer = await ClipTokenizer.fromDirectory(join(imported, 'tokenizer'));
    const ids = tokenizer.tokenize('red dog');
    const rows = (component: string) => {
      const file = SafetensorsFile.open(sourceFolder(component, 'model.safetensors'));
      const table = file.readFloat32('text_model.embeddings.token_embedding.weight');
      const width = file.info('text_model.embeddings.token_embedding.weight').shape[1];
      file.close();
      const out = new Float32Array(ids.length * width);
      ids.forEach((id, index) => out.set(table.subarray(id * width, (id + 1) * width), index * width));
      return { dtype: 'F32' as const, shape: [ids.length, width], values: out };
    };
    const embeddingsDir = join(root, 'embeddings');
    mkdirSync(embeddingsDir);
    const [clipL, clipG] = [rows('text_encoder'), rows('text_encoder_2')];
    writeFileSync(join(embeddingsDir, 'mything.safetensors'), safetensorsBytes({ clip_l: clipL, clip_g: clipG }));
    writeFileSync(join(embeddingsDir, 'swapped.safetensors'), safetensorsBytes({ clip_l: clipG, clip_g: clipL }));
    // One width only, as an SD 1.x embedding: not one for SDXL, so its name stays text.
    writeFileSync(join(embeddingsDir, 'single.safetensors'), safetensorsBytes({ emb_params: clipL }));

    const [entry] = cases();
    const request = (prompt: string) => ({ ...requestOf(entry), prompt });
    const words = await draw(imported, request('a photo of red dog'), { embeddingsDir });
    const embedded = await draw(imported, request('a photo of mything'), { embeddingsDir });
    expect(embedded.settings.embeddings).toEqual(['mything']);
    expect(levels(embedded.image.pixels, words.image.pixels).max).toBe(0);
    expect(levels((await draw(imported, request('a photo of swapped'), { embeddingsDir })).image.pixels, words.image.pixels).mean).toBeGreaterThan(1);
    expect((await draw(imported, request('a photo of single'), { embeddingsDir })).settings.embeddings).toBeUndefined();
  });
});

describe.runIf(fixturesPresent)('SDXL: the hub’s ONNX exports load as they are laid out', () => {
  let root: string;
  const layouts = { Optimum: OPTIMUM_LAYOUT, Olive: OLIVE_LAYOUT };
  const written = new Map<string, Promise<string>>();
  /** The fixture model as this exporter lays it out (written once). */
  const exported = (name: keyof typeof layouts) => {
    if (!written.has(name)) written.set(name, writeSdxlExport(sourceFolder(), join(root, name), layouts[name]).then(() => join(root, name)));
    return written.get(name)!;
  };
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'sdxl-exports-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it.each(['Optimum', 'Olive'] as const)('%s: hidden states and input types read from the sessions, attention fused at load', async (name) => {
    const dir = await exported(name);
    const pipeline = await StableDiffusionPipeline.fromPretrained(dir);
    try {
      expect(pipeline.fusedAttentions.unet).toBeGreaterThan(0);
      for (const entry of cases()) expectMatch((await pipeline.generate(requestOf(entry))).image.pixels, referenceOf(entry));
    } finally {
      await pipeline.release();
    }
  });

  it('model:pull takes an SDXL export out of a repository that holds PyTorch weights beside it (stabilityai/sdxl-turbo’s layout)', async () => {
    const files = new Map<string, Buffer>();
    const optimum = await exported('Optimum');
    for (const path of filesBelowSync(optimum)) files.set(path, readFileSync(join(optimum, path)));
    const pytorch = filesBelowSync(sourceFolder()).filter((path) => path.endsWith('.safetensors'));
    for (const path of pytorch) files.set(path, readFileSync(sourceFolder(path)));
    files.set('sd_xl_turbo_1.0.safetensors', Buffer.alloc(1024));
    const hub = await startMockHub({ 'stabilityai/sdxl-turbo': { files } });
    try {
      const modelsDir = join(root, 'pulled');
      const pulled = await pullModel({ repo: 'stabilityai/sdxl-turbo', name: 'sdxl-turbo', modelsDir }, { hub: { endpoint: hub.url } });
      const kept = filesBelowSync(pulled.dir);
      expect(kept.filter((path) => path.endsWith('.safetensors'))).toEqual([]);
      expect(kept).toEqual(expect.arrayContaining(['text_encoder_2/model.onnx', 'text_encoder_2/model.onnx_data', 'tokenizer_2/vocab.json', 'unet/model.onnx_data']));
      const [listed] = (await scanModels(modelsDir)).models;
      expect(listed).toMatchObject({ name: 'sdxl-turbo', type: 'SDXL-Turbo' });
      const turbo = cases().find((entry) => entry.guidance === 0)!;
      expectMatch((await draw(pulled.dir, requestOf(turbo))).image.pixels, referenceOf(turbo));
    } finally {
      await hub.close();
    }
  });

  it('model:pull of an SDXL repository with PyTorch weights only (stabilityai/stable-diffusion-xl-base-1.0’s layout) imports both text encoders and tokenizers', async () => {
    const files = new Map(filesBelowSync(sourceFolder()).map((path) => [path, readFileSync(sourceFolder(path))]));
    const unwanted = ['text_encoder_2/model.fp16.safetensors', 'unet/diffusion_pytorch_model.bin', 'sd_xl_base_1.0.safetensors', 'vae_1_0/config.json'];
    for (const path of unwanted) files.set(path, Buffer.from(`not needed: ${path}`));
    const hub = await startMockHub({ 'acme/tiny-sdxl-base': { files } });
    try {
      const modelsDir = join(root, 'pulled-pytorch');
      const pulled = await pullModel(
        { repo: 'acme/tiny-sdxl-base', name: 'tiny-sdxl-base', modelsDir },
        { hub: { endpoint: hub.url }, importPytorch: (folder, origin) => importModel({ source: folder, name: 'tiny-sdxl-base', modelsDir, origin }) },
      );
      expect(pulled).toMatchObject({ imported: true, dir: join(modelsDir, 'tiny-sdxl-base') });
      const downloaded = hub.log.filter((entry) => entry.method === 'GET' && entry.url.includes('/resolve/')).map((entry) => decodeURIComponent(entry.url));
      for (const path of unwanted) expect(downloaded.some((url) => url.endsWith(`/${path}`))).toBe(false);
      expect(downloaded.some((url) => url.endsWith('/tokenizer_2/vocab.json'))).toBe(true);
      const [listed] = (await scanModels(modelsDir)).models;
      expect(listed).toMatchObject({ name: 'tiny-sdxl-base', type: 'SDXL' });
      const [first] = cases();
      expectMatch((await draw(pulled.dir, requestOf(first))).image.pixels, referenceOf(first));
    } finally {
      await hub.close();
    }
  });

  it('an export optimized for CUDA is refused on the CPU before loading, naming the provider it needs and a model that works', async () => {
    const dir = join(root, 'cuda-only');
    mkdirSync(dir);
    for (const entry of ['model_index.json', 'scheduler', 'tokenizer', 'tokenizer_2']) symlinkSync(sourceFolder(entry), join(dir, entry));
    // No graph here is one onnxruntime could load: refusing must not need to.
    for (const [component, operators] of Object.entries({ text_encoder: [], text_encoder_2: ['SkipLayerNormalization'], vae_decoder: [], unet: ['GroupNorm', 'BiasSplitGelu', 'MultiHeadAttention'] })) {
      mkdirSync(join(dir, component));
      writeFileSync(join(dir, component, 'model.onnx'), graphWith(operators));
    }
    await expect(StableDiffusionPipeline.fromPretrained(dir)).rejects.toThrow(
      /cuda-only is an export optimized for one kind of GPU: its unet uses onnxruntime's GroupNorm, BiasSplitGelu operators, which only EXECUTION_PROVIDER=cuda \(NVIDIA GPUs\) or EXECUTION_PROVIDER=dml \(DirectML, Windows\) can run \(this bot runs cpu\)\. .*npm run model:pull -- sdxl-turbo/,
    );
  });
});

/** A VAE encoder that makes zero latents of any picture: an 8x8, stride-8 convolution with zero weights, output as `latents`. */
function zeroLatentsEncoder(): Uint8Array {
  const g = new GraphBuilder({ precision: 'fp32', attention: 'unfused' });
  g.op('Conv', ['sample', g.floatConstant('weight', [4, 3, 8, 8], new Float32Array(4 * 3 * 8 * 8))], [intsAttr('strides', [8, 8])], 'latents');
  return encodeModel(g.toModel('vae_encoder', [{ name: 'sample', type: 'float32', shape: [1, 3, 'height', 'width'] }], [{ name: 'latents', type: 'float32', shape: [1, 4, 'h', 'w'] }]));
}

/** The files below `dir` (through symbolic links), as "/"-separated relative paths. */
function filesBelowSync(dir: string, prefix = ''): string[] {
  return readdirSync(join(dir, prefix))
    .sort()
    .flatMap((name) => {
      const path = prefix ? `${prefix}/${name}` : name;
      return statSync(join(dir, path)).isDirectory() ? filesBelowSync(dir, path) : [path];
    });
}

/** An ONNX file whose graph holds one node of each of these com.microsoft operators (enough to read, not to run). */
function graphWith(operators: readonly string[]): Uint8Array {
  const { onnx } = onnxProto;
  const graph = { name: 'unet', node: operators.map((opType, index) => ({ opType, domain: 'com.microsoft', input: ['x'], output: [`y${index}`] })) };
  return onnx.ModelProto.encode({ irVersion: 8, opsetImport: [{ domain: 'com.microsoft', version: 1 }], graph }).finish();
}

describe.runIf(fixturesPresent)('SDXL: what is refused, in one line', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'sdxl-refused-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('a refiner (text_encoder_2 alone, aesthetic score), as a folder to import', async () => {
    const refiner = join(root, 'refiner');
    mkdirSync(refiner);
    const index = JSON.parse(readFileSync(sourceFolder('model_index.json'), 'utf8'));
    writeFileSync(join(refiner, 'model_index.json'), JSON.stringify({ ...index, text_encoder: [null, null], tokenizer: [null, null], requires_aesthetics_score: true }));
    await expect(importModel({ source: refiner, modelsDir: join(root, 'models') })).rejects.toThrow(/refiner is an SDXL refiner: it refines images and draws none from a prompt alone/);
  });
});
