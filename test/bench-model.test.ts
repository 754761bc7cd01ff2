import { existsSync, statSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StableDiffusionPipeline } from '../src/pipeline/pipeline.ts';
import { buildVaeDecoder } from '../src/graphs/autoencoder.ts';
import { buildClipTextModel } from '../src/graphs/clip-text-model.ts';
import { resolveAutoencoderKLConfig, resolveClipTextConfig, resolveUnetConfig } from '../src/graphs/configs.ts';
import { buildUNet } from '../src/graphs/unet-2d-condition.ts';
import { countParameters } from '../src/graphs/write-graph.ts';
import { importModel } from '../src/import/import-model.ts';
import { SafetensorsFile } from '../src/models/safetensors.ts';
import { writeBenchCheckpoint } from '../src/tiny-model/bench-checkpoint.ts';
import { type BenchModelConfigs, LCM_CONFIGS, SD15_CONFIGS, SDXL_CONFIGS, SD_TURBO_CONFIGS, writeBenchModel, writeBenchTinyVae } from '../src/tiny-model/bench-model.ts';
import { describeInstalledModel, describeInstalledVae } from '../src/models/installed.ts';

const { onnx } = onnxProto;

/** SD 1.5's architecture at a few channels, so the same graph code runs in a moment. */
const SMALL: BenchModelConfigs = {
  ...SD15_CONFIGS,
  unet: { ...SD15_CONFIGS.unet, block_out_channels: [32, 32, 64, 64], cross_attention_dim: 64 },
  textEncoder: { ...SD15_CONFIGS.textEncoder, vocab_size: 1000, hidden_size: 64, num_attention_heads: 4, num_hidden_layers: 2, intermediate_size: 128 },
  vae: { ...SD15_CONFIGS.vae, block_out_channels: [32, 32, 64, 64] },
};

describe('benchmark-size model', () => {
  // The published sizes of runwayml/stable-diffusion-v1-5's parts, as torch counts them (sum of numel()).
  it('has exactly Stable Diffusion 1.5 parameter counts', () => {
    const timestep = { timestepType: 'float32', timestepShape: 'batch' } as const;
    expect(countParameters((g) => buildUNet(g, resolveUnetConfig(SD15_CONFIGS.unet), timestep))).toBe(859_520_964);
    expect(countParameters((g) => buildClipTextModel(g, resolveClipTextConfig(SD15_CONFIGS.textEncoder), { inputIdsType: 'int32' }))).toBe(123_060_480);
    expect(countParameters((g) => buildVaeDecoder(g, resolveAutoencoderKLConfig(SD15_CONFIGS.vae)))).toBe(49_490_199);
  });

  // stabilityai/sd-turbo's U-Net and text encoder (SD 2.1's), as torch counts them.
  it('has exactly SD-Turbo parameter counts with --turbo, and its trailing Euler scheduler', () => {
    const timestep = { timestepType: 'float32', timestepShape: 'batch' } as const;
    expect(countParameters((g) => buildUNet(g, resolveUnetConfig(SD_TURBO_CONFIGS.unet), timestep))).toBe(865_910_724);
    expect(countParameters((g) => buildClipTextModel(g, resolveClipTextConfig(SD_TURBO_CONFIGS.textEncoder), { inputIdsType: 'int32' }))).toBe(340_387_840);
    expect(SD_TURBO_CONFIGS.scheduler).toMatchObject({ _class_name: 'EulerDiscreteScheduler', timestep_spacing: 'trailing' });
  });

  let root: string;
  let dir: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'bench-model-test-'));
    dir = join(root, 'small');
    await writeBenchModel(dir, { configs: SMALL });
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('keeps the weights in external data files, large tensors 64 KiB-aligned', async () => {
    for (const part of ['text_encoder', 'unet', 'vae_decoder', 'vae_encoder']) {
      const model = onnx.ModelProto.decode(await readFile(join(dir, part, 'model.onnx')));
      const external = model.graph!.initializer!.filter((tensor) => tensor.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL);
      expect(external.length).toBeGreaterThan(0);
      const dataBytes = statSync(join(dir, part, 'model.onnx_data')).size;
      for (const tensor of external) {
        const entry = Object.fromEntries(tensor.externalData!.map(({ key, value }) => [key, value]));
        const [offset, length] = [Number(entry.offset), Number(entry.length)];
        expect(entry.location).toBe('model.onnx_data');
        expect(length).toBe(4 * tensor.dims!.reduce((a, b) => Number(a) * Number(b), 1));
        expect(offset + length).toBeLessThanOrEqual(dataBytes);
        if (length >= 1 << 20) expect(offset % (64 << 10)).toBe(0);
      }
    }
  });

  it('runs in the pipeline at 128x128 and draws an image', async () => {
    const unetCalls: number[] = [];
    const pipeline = await StableDiffusionPipeline.fromPretrained(dir, { onOnnxRun: (label, ms) => label === 'unet' && unetCalls.push(ms) });
    try {
      expect(pipeline.info.isTiny).toBe(false);
      const { image, timings } = await pipeline.generate({ prompt: 'a dog', steps: 2, guidanceScale: 7.5, width: 128, height: 128, seed: 1, scheduler: 'Euler' });
      expect([image.width, image.height, image.pixels.length]).toEqual([128, 128, 128 * 128 * 3]);
      expect(new Set(image.pixels).size).toBeGreaterThan(16);
      // Two steps, each guidance's two halves (on the CPU one call each).
      expect(unetCalls).toHaveLength(4);
      expect(unetCalls.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(timings.onnxMs);
    } finally {
      await pipeline.release();
    }
  });

  it('refuses to overwrite an existing folder and leaves no partial one behind on failure', async () => {
    await expect(writeBenchModel(dir, { configs: SMALL })).rejects.toThrow(/already exists/);
    const failing = join(root, 'failing');
    await expect(writeBenchModel(failing, { configs: SMALL, tokenizerDir: join(root, 'no-such-tokenizer') })).rejects.toThrow(/no vocab.json/);
    expect(existsSync(failing)).toBe(false);
    expect(existsSync(`${failing}.partial-${process.pid}`)).toBe(false);
  });
});

describe('benchmark-size LCM and tiny decoder', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'bench-lcm-test-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('an LCM (guidance embedding, LCM scheduler) is one, and draws in 4 steps decoded by the tiny decoder beside it', async () => {
    const lcmDir = join(root, 'lcm');
    await writeBenchModel(lcmDir, { configs: { ...SMALL, unet: { ...SMALL.unet, time_cond_proj_dim: LCM_CONFIGS.unet.time_cond_proj_dim }, scheduler: LCM_CONFIGS.scheduler } });
    const taesdDir = join(root, 'taesd-bench');
    await writeBenchTinyVae(taesdDir);
    expect(await describeInstalledVae(taesdDir)).toMatchObject({ name: 'taesd-bench', type: 'AutoencoderTiny', precision: 'fp32' });
    expect((await describeInstalledModel(lcmDir)).type).toBe('LCM');

    const pipeline = await StableDiffusionPipeline.fromPretrained(lcmDir, { tinyVaeDir: taesdDir });
    try {
      expect(pipeline.info).toMatchObject({ defaultSteps: 4, defaultScheduler: 'LCM', tinyDecoder: 'taesd-bench' });
      const { image, settings } = await pipeline.generate({ prompt: 'a dog', steps: 4, guidanceScale: 8.5, width: 128, height: 128, seed: 1, decoder: 'tiny' });
      expect([image.width, image.height]).toEqual([128, 128]);
      expect(new Set(image.pixels).size).toBeGreaterThan(16);
      expect(settings).toMatchObject({ scheduler: 'LCM', tinyDecoder: 'taesd-bench' });
    } finally {
      await pipeline.release();
    }
  });
});

/** SDXL's architecture at a few channels and layers: two text encoders, three U-Net levels, the text_time embedding. */
const SMALL_XL: BenchModelConfigs = {
  textEncoder: SMALL.textEncoder,
  textEncoder2: { ...SDXL_CONFIGS.textEncoder2, vocab_size: 1000, hidden_size: 64, projection_dim: 64, num_attention_heads: 4, num_hidden_layers: 2, intermediate_size: 128 },
  unet: { ...SDXL_CONFIGS.unet, block_out_channels: [32, 64, 64], transformer_layers_per_block: [1, 1, 2], attention_head_dim: [2, 4, 4], cross_attention_dim: 128, addition_time_embed_dim: 8, projection_class_embeddings_input_dim: 64 + 6 * 8 },
  vae: { ...SDXL_CONFIGS.vae, block_out_channels: [32, 32, 64, 64] },
  scheduler: SDXL_CONFIGS.scheduler,
};

describe('SDXL benchmark-size model', () => {
  // stabilityai/stable-diffusion-xl-base-1.0's parts, as torch counts them (sum of numel()).
  it('has exactly SDXL base’s parameter counts', () => {
    const timestep = { timestepType: 'float32', timestepShape: 'batch' } as const;
    expect(countParameters((g) => buildUNet(g, resolveUnetConfig(SDXL_CONFIGS.unet), timestep))).toBe(2_567_463_684);
    expect(countParameters((g) => buildClipTextModel(g, resolveClipTextConfig(SDXL_CONFIGS.textEncoder2!), { inputIdsType: 'int32' }))).toBe(694_659_840);
    expect(countParameters((g) => buildClipTextModel(g, resolveClipTextConfig(SDXL_CONFIGS.textEncoder), { inputIdsType: 'int32' }))).toBe(123_060_480);
    expect(countParameters((g) => buildVaeDecoder(g, resolveAutoencoderKLConfig(SDXL_CONFIGS.vae)))).toBe(49_490_199);
  });

  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'bench-model-xl-test-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('is an SDXL pipeline: both text encoders, tokenizer_2 padding with "!", SDXL’s scheduler; it draws at 128x128', async () => {
    const dir = join(root, 'small-xl');
    const summary = await writeBenchModel(dir, { configs: SMALL_XL, precision: 'fp16' });
    expect(Object.keys(summary.parameters).sort()).toEqual(['text_encoder', 'text_encoder_2', 'unet', 'vae']);
    expect(JSON.parse(await readFile(join(dir, 'tokenizer_2', 'tokenizer_config.json'), 'utf8')).pad_token).toBe('!');
    // SDXL's VAE overflows in float16: kept in fp32 as imports keep it, the rest in fp16.
    const initializerTypes = async (part: string) =>
      new Set(onnx.ModelProto.decode(await readFile(join(dir, part, 'model.onnx'))).graph!.initializer!.filter((tensor) => tensor.dims!.length > 1).map((tensor) => tensor.dataType));
    expect(await initializerTypes('vae_decoder')).toEqual(new Set([onnx.TensorProto.DataType.FLOAT]));
    expect(await initializerTypes('unet')).toContain(onnx.TensorProto.DataType.FLOAT16);

    const unetCalls: number[] = [];
    const pipeline = await StableDiffusionPipeline.fromPretrained(dir, { onOnnxRun: (label, ms) => label === 'unet' && unetCalls.push(ms) });
    try {
      expect(pipeline.info.defaultScheduler).toBe('Euler');
      expect([pipeline.info.nativeWidth, pipeline.info.nativeHeight]).toEqual([1024, 1024]);
      const { image } = await pipeline.generate({ prompt: 'a dog', negativePrompt: 'blurry', steps: 2, guidanceScale: 5, width: 128, height: 128, seed: 1 });
      expect([image.width, image.height]).toEqual([128, 128]);
      expect(new Set(image.pixels).size).toBeGreaterThan(16);
      // Two steps, each guidance's two halves (on the CPU one call each).
      expect(unetCalls).toHaveLength(4);
    } finally {
      await pipeline.release();
    }
  });
});

describe('benchmark single-file checkpoint', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'bench-checkpoint-test-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('holds the benchmark model’s weights under the original key names: imported, it computes what that model does', async () => {
    const onnxDir = join(root, 'onnx');
    await writeBenchModel(onnxDir, { configs: SMALL, seed: 3 });
    const checkpoint = join(root, 'small.safetensors');
    const written = await writeBenchCheckpoint(checkpoint, { configs: SMALL, seed: 3, dtype: 'F32' });
    const header = SafetensorsFile.open(checkpoint);
    const keys = [...header.tensors.keys()];
    header.close();
    expect(keys).toHaveLength(written.tensors);
    expect(keys).toContain('model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight');
    expect(keys).toContain('first_stage_model.decoder.up.3.block.0.conv1.weight');
    expect(keys).toContain('cond_stage_model.transformer.text_model.final_layer_norm.weight');

    const imported = await importModel({ source: checkpoint, configDir: onnxDir, name: 'imported', modelsDir: root });
    const request = { prompt: 'a dog', steps: 2, guidanceScale: 7.5, width: 128, height: 128, seed: 1, scheduler: 'Euler' };
    const images = [];
    for (const dir of [onnxDir, imported.dir]) {
      const pipeline = await StableDiffusionPipeline.fromPretrained(dir);
      images.push((await pipeline.generate(request)).image.pixels);
      await pipeline.release();
    }
    let worst = 0;
    for (let i = 0; i < images[0].length; i++) worst = Math.max(worst, Math.abs(images[0][i] - images[1][i]));
    expect(worst).toBeLessThanOrEqual(1);
  });
});
