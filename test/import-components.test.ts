import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeUNet, writeVae } from '../src/graphs/components.ts';
import { resolveUnetConfig, resolveVaeConfig } from '../src/graphs/configs.ts';
import type { AttentionKind } from '../src/graphs/onnx-graph.ts';
import { CheckpointWeights } from '../src/import/checkpoint-weights.ts';
import { openComponentWeights, readComponentConfig } from '../src/import/component-folder.ts';
import { importTextEncoder } from '../src/import/text-encoder.ts';
import { fixturePath, fixturesPresent, maxAbsDiff, readF32, readFixtureJson, readI32 } from './fixtures.ts';

/** The references' tolerance: float32 graphs against PyTorch (README of the fixtures, models/ section). */
const COMPONENT_TOLERANCE = 1e-4;

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'import-components-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function run(modelPath: string, feeds: Record<string, ort.Tensor>): Promise<ort.InferenceSession.OnnxValueMapType> {
  const session = await ort.InferenceSession.create(modelPath, { executionProviders: ['cpu'], graphOptimizationLevel: 'all' });
  try {
    return await session.run(feeds);
  } finally {
    await session.release();
  }
}

function floats(...parts: string[]): Float32Array {
  return readF32(...parts);
}

function tensor(values: Float32Array, shape: number[]): ort.Tensor {
  return new ort.Tensor('float32', values, shape);
}

/** Builds a diffusers component folder's U-Net or VAE with its weights read under their own names. */
async function buildFromFolder(kind: 'unet' | 'vae', source: string, out: string, attention: AttentionKind): Promise<void> {
  const tensors = openComponentWeights(source, kind);
  const weights = new CheckpointWeights(tensors, kind, (name) => [{ key: name }]);
  try {
    if (kind === 'unet') {
      await writeUNet(out, resolveUnetConfig(readComponentConfig(source, kind)), { precision: 'fp32', attention, weights, timestepType: 'float32', timestepShape: 'batch' });
    } else {
      await writeVae(out, resolveVaeConfig(readComponentConfig(source, kind)), { precision: 'fp32', attention, weights });
    }
  } finally {
    tensors.close();
  }
}

function opTypes(modelPath: string): string[] {
  return (onnxProto.onnx.ModelProto.decode(readFileSync(modelPath)).graph?.node ?? []).map((node) => node.opType ?? '');
}

describe.runIf(fixturesPresent).each(['tiny-sd15', 'tiny-sd2v'])('%s components against PyTorch', (model) => {
  const index = () => readFixtureJson('models', 'index.json').models[model];

  it('text encoder: last_hidden_state and pooler_output', async () => {
    const reference = index().components.text_encoder;
    const out = join(root, model, 'text_encoder');
    await importTextEncoder(fixturePath('models', model, 'text_encoder'), out);
    const ids = readI32(reference.input_ids.file);
    const outputs = await run(join(out, 'model.onnx'), { input_ids: new ort.Tensor('int32', ids, reference.input_ids.shape) });
    expect(outputs.last_hidden_state.dims).toEqual(reference.last_hidden_state.shape);
    expect(maxAbsDiff(outputs.last_hidden_state.data as Float32Array, floats(reference.last_hidden_state.file))).toBeLessThan(COMPONENT_TOLERANCE);
    expect(maxAbsDiff(outputs.pooler_output.data as Float32Array, floats(reference.pooler_output.file))).toBeLessThan(COMPONENT_TOLERANCE);
  });

  it.each<AttentionKind>(['unfused', 'fused'])('U-Net with %s attention: one call at timestep 981', async (attention) => {
    const reference = index().components.unet;
    const out = join(root, model, `unet-${attention}`);
    await buildFromFolder('unet', fixturePath('models', model, 'unet'), out, attention);
    const ops = opTypes(join(out, 'model.onnx'));
    expect(ops.includes('MultiHeadAttention')).toBe(attention === 'fused');
    expect(ops.includes('Softmax')).toBe(attention === 'unfused');
    const outputs = await run(join(out, 'model.onnx'), {
      sample: tensor(floats(reference.sample.file), reference.sample.shape),
      timestep: tensor(Float32Array.of(reference.timestep, reference.timestep), [2]),
      encoder_hidden_states: tensor(floats(reference.encoder_hidden_states.file), reference.encoder_hidden_states.shape),
    });
    expect(maxAbsDiff(outputs.out_sample.data as Float32Array, floats(reference.out_sample.file))).toBeLessThan(COMPONENT_TOLERANCE);
  });

  it('VAE decoder, and encoder with the latent mean and log-variance', async () => {
    const { vae_decoder: decoder, vae_encoder: encoder } = index().components;
    const out = join(root, model, 'vae');
    await buildFromFolder('vae', fixturePath('models', model, 'vae'), out, 'fused');
    const decoded = await run(join(out, 'vae_decoder', 'model.onnx'), { latent_sample: tensor(floats(decoder.latent_sample.file), decoder.latent_sample.shape) });
    expect(maxAbsDiff(decoded.sample.data as Float32Array, floats(decoder.sample.file))).toBeLessThan(COMPONENT_TOLERANCE);
    const encoded = await run(join(out, 'vae_encoder', 'model.onnx'), { sample: tensor(floats(encoder.sample.file), encoder.sample.shape) });
    expect(maxAbsDiff(encoded.latent_mean.data as Float32Array, floats(encoder.latent_mean.file))).toBeLessThan(COMPONENT_TOLERANCE);
    expect(maxAbsDiff(encoded.latent_logvar.data as Float32Array, floats(encoder.latent_logvar.file))).toBeLessThan(COMPONENT_TOLERANCE);
  });
});

/** The builder's features the next pipelines use (SDXL's text_time U-Net and text encoders, LCM's guidance embedding). */
describe.runIf(fixturesPresent)('components of the SDXL and LCM fixtures against PyTorch', () => {
  const e2e2 = (feature: string, ...parts: string[]) => join('e2e2', feature, ...parts);
  const models = (...parts: string[]) => fixturePath('e2e2', 'models', ...parts);
  /** The first U-Net call of a case: its batch of samples in, its outputs out. */
  const firstCall = (values: Float32Array, shape: number[]) => values.subarray(0, shape.slice(1).reduce((a, b) => a * b, 1));

  it('SDXL U-Net (text_time embedding, two transformer layers per block) on its first call', async () => {
    const [sdxl] = readFixtureJson('e2e2', 'sdxl', 'manifest.json').cases;
    const calls = sdxl.intermediates;
    const out = join(root, 'sdxl-unet');
    await buildFromFolder('unet', models('tiny-sdxl-pub-torch', 'unet'), out, 'fused');
    const sampleShape = calls.unet_sample.shape.slice(1);
    const timestep = calls.unet_timesteps[0];
    const outputs = await run(join(out, 'model.onnx'), {
      sample: tensor(firstCall(floats(e2e2('sdxl', calls.unet_sample.file)), calls.unet_sample.shape), sampleShape),
      timestep: tensor(Float32Array.of(timestep, timestep), [2]),
      encoder_hidden_states: tensor(floats(e2e2('sdxl', calls.unet_encoder_hidden_states.file)), calls.unet_encoder_hidden_states.shape),
      text_embeds: tensor(floats(e2e2('sdxl', calls.unet_text_embeds.file)), calls.unet_text_embeds.shape),
      time_ids: tensor(floats(e2e2('sdxl', calls.unet_time_ids.file)), calls.unet_time_ids.shape),
    });
    expect(maxAbsDiff(outputs.out_sample.data as Float32Array, firstCall(floats(e2e2('sdxl', calls.unet_out.file)), calls.unet_out.shape))).toBeLessThan(COMPONENT_TOLERANCE);
  });

  it.each(['text_encoder', 'text_encoder_2'])('SDXL %s: penultimate hidden state and pooled output', async (encoder) => {
    const [sdxl] = readFixtureJson('e2e2', 'sdxl', 'manifest.json').cases;
    const components = sdxl.components;
    const out = join(root, `sdxl-${encoder}`);
    await importTextEncoder(models('tiny-sdxl-pub-torch', encoder), out, { penultimateHiddenState: true });
    const reference = (name: string) => components[`prompt_${encoder}_${name}`];
    const ids = reference('input_ids');
    const outputs = await run(join(out, 'model.onnx'), { input_ids: new ort.Tensor('int32', readI32(e2e2('sdxl', ids.file)), ids.shape) });
    const penultimate = Object.keys(outputs).find((name) => name.startsWith('hidden_states.'))!;
    expect(maxAbsDiff(outputs[penultimate].data as Float32Array, floats(e2e2('sdxl', reference('penultimate_hidden_state').file)))).toBeLessThan(COMPONENT_TOLERANCE);
    expect(maxAbsDiff(outputs.last_hidden_state.data as Float32Array, floats(e2e2('sdxl', reference('last_hidden_state').file)))).toBeLessThan(COMPONENT_TOLERANCE);
    const pooled = encoder === 'text_encoder_2' ? 'text_embeds' : 'pooler_output';
    expect(maxAbsDiff(outputs[pooled].data as Float32Array, floats(e2e2('sdxl', reference(pooled).file)))).toBeLessThan(COMPONENT_TOLERANCE);
  });

  it('LCM U-Net (timestep_cond) on its first call', async () => {
    const [lcm] = readFixtureJson('e2e2', 'lcm', 'manifest.json').cases;
    const calls = lcm.intermediates;
    const out = join(root, 'lcm-unet');
    await buildFromFolder('unet', models('tiny-lcm-pub-torch', 'unet'), out, 'fused');
    const outputs = await run(join(out, 'model.onnx'), {
      sample: tensor(firstCall(floats(e2e2('lcm', calls.unet_sample.file)), calls.unet_sample.shape), calls.unet_sample.shape.slice(1)),
      timestep: tensor(Float32Array.of(calls.unet_timesteps[0]), [1]),
      encoder_hidden_states: tensor(floats(e2e2('lcm', calls.unet_encoder_hidden_states.file)), calls.unet_encoder_hidden_states.shape),
      timestep_cond: tensor(floats(e2e2('lcm', calls.unet_timestep_cond.file)), calls.unet_timestep_cond.shape),
    });
    expect(maxAbsDiff(outputs.out_sample.data as Float32Array, firstCall(floats(e2e2('lcm', calls.unet_out.file)), calls.unet_out.shape))).toBeLessThan(COMPONENT_TOLERANCE);
  });
});
