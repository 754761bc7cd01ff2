import onnxProto from 'onnx-proto';
import type { onnx as OnnxTypes } from 'onnx-proto';
import ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { buildVaeDecoder } from '../src/graphs/autoencoder.ts';
import { buildClipTextModel } from '../src/graphs/clip-text-model.ts';
import { resolveAutoencoderKLConfig, resolveClipTextConfig, resolveUnetConfig } from '../src/graphs/configs.ts';
import { type AttentionKind, GraphBuilder, type ModelProto, type Precision, encodeModel } from '../src/graphs/onnx-graph.ts';
import { SD1_UNET } from '../src/graphs/stable-diffusion.ts';
import { buildUNet } from '../src/graphs/unet-2d-condition.ts';
import { RandomWeights } from '../src/graphs/weights.ts';
import { fixInputDimensions, fuseBiasSplitGelu, fuseForGpu, fuseGroupNorm, fuseSkipLayerNormalization } from '../src/pipeline/gpu-fusion.ts';
import { StableDiffusionPipeline } from '../src/pipeline/pipeline.ts';
import { TINY_UNET, TINY_VAE, ensureTinyModel } from '../src/tiny-model/index.ts';
import { maxAbsDifference, randomTensor, runOnCpu } from './onnx-cpu.ts';

const { onnx } = onnxProto;
type NodeProto = OnnxTypes.INodeProto;

const TINY_TEXT = { vocab_size: 1000, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, max_position_embeddings: 77, hidden_act: 'quick_gelu' };

function tinyUNet(precision: Precision = 'fp32', attention: AttentionKind = 'unfused'): ModelProto {
  const g = new GraphBuilder({ precision, attention, weights: new RandomWeights(7) });
  return buildUNet(g, resolveUnetConfig(TINY_UNET), { timestepType: 'float32', timestepShape: 'batch' });
}

function tinyVaeDecoder(): ModelProto {
  const g = new GraphBuilder({ precision: 'fp32', attention: 'unfused', weights: new RandomWeights(8) });
  return buildVaeDecoder(g, resolveAutoencoderKLConfig({ ...TINY_VAE, sample_size: 64 }));
}

function tinyTextEncoder(): ModelProto {
  const g = new GraphBuilder({ precision: 'fp32', attention: 'unfused', weights: new RandomWeights(9) });
  return buildClipTextModel(g, resolveClipTextConfig(TINY_TEXT), { inputIdsType: 'int32' });
}

const copy = (model: ModelProto): ModelProto => onnx.ModelProto.decode(encodeModel(model));
const count = (model: ModelProto, opType: string) => (model.graph?.node ?? []).filter((node) => node.opType === opType).length;

const run = (model: ModelProto, feeds: Record<string, ort.Tensor>) => runOnCpu(encodeModel(model), feeds);

const unetFeeds = () => ({
  sample: randomTensor([2, 4, 16, 16], 1),
  timestep: new ort.Tensor('float32', Float32Array.from([981, 981]), [2]),
  encoder_hidden_states: randomTensor([2, 77, TINY_UNET.cross_attention_dim], 2),
});

/*
 * BiasSplitGelu and GroupNorm have no CPU kernel in onnxruntime 1.30. To check that the fused nodes are wired as
 * their kernels read them (inputs, attributes, channels-last layout), the test turns each back into standard
 * operators, written from the contrib operator's definition (not from the builder's pattern), and runs that.
 */
function expandForCpu(model: ModelProto): ModelProto {
  const graph = model.graph!;
  const initializers: OnnxTypes.ITensorProto[] = [];
  const int64 = (name: string, values: number[]) => {
    initializers.push({ name, dataType: onnx.TensorProto.DataType.INT64, dims: [values.length], rawData: new Uint8Array(BigInt64Array.from(values.map(BigInt)).buffer) });
    return name;
  };
  const float = (name: string, value: number) => {
    initializers.push({ name, dataType: onnx.TensorProto.DataType.FLOAT, dims: [], floatData: [value] });
    return name;
  };
  const node = (opType: string, input: string[], output: string, attribute: OnnxTypes.IAttributeProto[] = []): NodeProto => ({ opType, name: output, input, output: [output], attribute });
  const ints = (name: string, values: number[]) => ({ name, type: onnx.AttributeProto.AttributeType.INTS, ints: values });
  const int = (name: string, value: number) => ({ name, type: onnx.AttributeProto.AttributeType.INT, i: value });
  const attr = (fused: NodeProto, name: string) => fused.attribute?.find((a) => a.name === name);

  graph.node = (graph.node ?? []).flatMap((fused, ordinal) => {
    const p = `expanded/${ordinal}`;
    const [output] = fused.output ?? [];
    if (fused.opType === 'BiasSplitGelu') {
      // output = (x + bias)[..., :D/2] · gelu((x + bias)[..., D/2:]), D = bias length
      const width = Number(graph.initializer!.find((t) => t.name === fused.input![1])!.dims![0]);
      const half = width / 2;
      return [
        node('Add', [fused.input![0], fused.input![1]], `${p}/biased`),
        node('Slice', [`${p}/biased`, int64(`${p}/s0`, [0]), int64(`${p}/e0`, [half]), int64(`${p}/a`, [-1])], `${p}/left`),
        node('Slice', [`${p}/biased`, int64(`${p}/s1`, [half]), int64(`${p}/e1`, [width]), `${p}/a`], `${p}/right`),
        node('Mul', [`${p}/right`, float(`${p}/rsqrt2`, Math.SQRT1_2)], `${p}/scaled`),
        node('Erf', [`${p}/scaled`], `${p}/erf`),
        node('Add', [`${p}/erf`, float(`${p}/one`, 1)], `${p}/onePlus`),
        node('Mul', [`${p}/onePlus`, float(`${p}/half`, 0.5)], `${p}/cdf`),
        node('Mul', [`${p}/right`, `${p}/cdf`], `${p}/gelu`),
        node('Mul', [`${p}/left`, `${p}/gelu`], output),
      ];
    }
    if (fused.opType === 'GroupNorm') {
      // NHWC in and out; per sample and group: (x - mean) / sqrt(var + eps) · γ + β, then SiLU when activation = 1
      expect(Number(attr(fused, 'channels_last')?.i)).toBe(1);
      const groups = Number(attr(fused, 'groups')!.i);
      const epsilon = attr(fused, 'epsilon')!.f!;
      const [x, gamma, beta] = fused.input!;
      const nodes = [
        node('Shape', [x], `${p}/shape`),
        node('Reshape', [x, int64(`${p}/grouping`, [0, 0, 0, groups, -1])], `${p}/grouped`),
        node('ReduceMean', [`${p}/grouped`], `${p}/mean`, [ints('axes', [1, 2, 4]), int('keepdims', 1)]),
        node('Sub', [`${p}/grouped`, `${p}/mean`], `${p}/centred`),
        node('Mul', [`${p}/centred`, `${p}/centred`], `${p}/squares`),
        node('ReduceMean', [`${p}/squares`], `${p}/variance`, [ints('axes', [1, 2, 4]), int('keepdims', 1)]),
        node('Add', [`${p}/variance`, float(`${p}/epsilon`, epsilon)], `${p}/varianceEps`),
        node('Sqrt', [`${p}/varianceEps`], `${p}/deviation`),
        node('Div', [`${p}/centred`, `${p}/deviation`], `${p}/normalGrouped`),
        node('Reshape', [`${p}/normalGrouped`, `${p}/shape`], `${p}/normal`),
        node('Mul', [`${p}/normal`, gamma], `${p}/scaledNormal`),
        node('Add', [`${p}/scaledNormal`, beta], Number(attr(fused, 'activation')!.i) === 1 ? `${p}/affine` : output),
      ];
      if (Number(attr(fused, 'activation')!.i) === 1) nodes.push(node('Sigmoid', [`${p}/affine`], `${p}/sigmoid`), node('Mul', [`${p}/affine`, `${p}/sigmoid`], output));
      return nodes;
    }
    return [fused];
  });
  graph.initializer = [...(graph.initializer ?? []), ...initializers];
  return model;
}

describe('SkipLayerNormalization (onnxruntime has a CPU kernel)', () => {
  it('fuses every residual Add + LayerNorm of the U-Net, with the projection bias, and the output is unchanged', async () => {
    const unfused = tinyUNet();
    const fused = copy(unfused);
    // the mid block's one transformer: norm2 and norm3 follow residual Adds (norm1 follows proj_in)
    expect(fuseSkipLayerNormalization(fused)).toBe(2);
    expect(count(fused, 'SkipLayerNormalization')).toBe(2);
    expect(count(fused, 'LayerNormalization')).toBe(1);
    const withBias = fused.graph!.node!.filter((node) => node.opType === 'SkipLayerNormalization' && node.input?.length === 5);
    expect(withBias).toHaveLength(2);

    const feeds = unetFeeds();
    const [expected, actual] = [await run(unfused, feeds), await run(fused, feeds)];
    expect(maxAbsDifference(expected, actual)).toBeLessThan(1e-4);
  });

  it('fuses CLIP text encoder layers the same way, output unchanged', async () => {
    const unfused = tinyTextEncoder();
    const fused = copy(unfused);
    // the first layer_norm1 after token + position embeddings; per layer, layer_norm2 after the attention's residual
    // Add and the next layer_norm1 (or final_layer_norm) after the MLP's
    expect(fuseSkipLayerNormalization(fused)).toBe(5);
    expect(count(fused, 'LayerNormalization')).toBe(0);
    const feeds = { input_ids: new ort.Tensor('int32', Int32Array.from({ length: 77 }, (_, i) => (i * 37) % 1000), [1, 77]) };
    expect(maxAbsDifference(await run(unfused, feeds), await run(fused, feeds))).toBeLessThan(1e-4);
  });

  it('leaves a LayerNorm over another axis alone', () => {
    const model = tinyUNet();
    for (const node of model.graph!.node!) {
      if (node.opType === 'LayerNormalization') node.attribute = [...(node.attribute ?? []).filter((a) => a.name !== 'axis'), { name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 1 }];
    }
    expect(fuseSkipLayerNormalization(model)).toBe(0);
  });
});

describe('BiasSplitGelu (no CPU kernel: checked through its definition expanded back)', () => {
  it("replaces GEGLU's bias, halves and GELU with one node; expanded, the output is unchanged", async () => {
    const unfused = tinyUNet();
    const fused = copy(unfused);
    expect(fuseBiasSplitGelu(fused)).toBe(1);
    expect(count(fused, 'BiasSplitGelu')).toBe(1);
    expect(count(fused, 'Erf')).toBe(count(unfused, 'Erf') - 1);
    const feeds = unetFeeds();
    expect(maxAbsDifference(await run(unfused, feeds), await run(expandForCpu(fused), feeds))).toBeLessThan(1e-4);
  });

  it("on CUDA only at the widths its kernel takes (SD's 2560, 5120, 10240)", () => {
    expect(fuseBiasSplitGelu(tinyUNet(), [2560, 5120, 10240])).toBe(0);
    const sd15 = new GraphBuilder({ precision: 'fp16', attention: 'fused' });
    const model = buildUNet(sd15, resolveUnetConfig(SD1_UNET), { timestepType: 'float32', timestepShape: 'batch' });
    // 16 transformer blocks, GEGLU widths 2560 (320 channels), 5120 and 10240
    expect(fuseBiasSplitGelu(model, [2560, 5120, 10240])).toBe(16);
  });
});

describe('GroupNorm (CUDA only; no CPU kernel: checked through its definition expanded back)', () => {
  it('U-Net: every GroupNorm, with its SiLU where one follows, channels-last; expanded, the output is unchanged', async () => {
    const unfused = tinyUNet();
    const fused = copy(unfused);
    const norms = count(unfused, 'InstanceNormalization');
    expect(fuseGroupNorm(fused)).toBe(norms);
    expect(count(fused, 'InstanceNormalization')).toBe(0);
    const groupNorms = fused.graph!.node!.filter((node) => node.opType === 'GroupNorm');
    const withSilu = groupNorms.filter((node) => Number(node.attribute!.find((a) => a.name === 'activation')!.i) === 1);
    // resnets' norm1/norm2 and conv_norm_out are followed by SiLU; the transformer's norm is not
    expect(withSilu.length).toBe(norms - 1);
    const feeds = unetFeeds();
    expect(maxAbsDifference(await run(unfused, feeds), await run(expandForCpu(fused), feeds))).toBeLessThan(1e-4);
  });

  it('VAE decoder (torch-style GroupNorm with and without SiLU), expanded, the output is unchanged', async () => {
    const unfused = tinyVaeDecoder();
    const fused = copy(unfused);
    expect(fuseGroupNorm(fused)).toBe(count(unfused, 'InstanceNormalization'));
    const feeds = { latent_sample: randomTensor([1, 4, 8, 8], 3) };
    expect(maxAbsDifference(await run(unfused, feeds), await run(expandForCpu(fused), feeds))).toBeLessThan(1e-4);
  });

  it('fp16 graphs: the float32 casts around the statistics go, γ and β become float32 vectors', () => {
    const model = tinyUNet('fp16');
    const casts = count(model, 'Cast');
    const norms = count(model, 'InstanceNormalization');
    expect(fuseGroupNorm(model)).toBe(norms);
    // two casts (in, out) per norm removed; γ and β each get one Cast to float32
    expect(count(model, 'Cast')).toBe(casts - 2 * norms + 2 * norms);
    const groupNorm = model.graph!.node!.find((node) => node.opType === 'GroupNorm')!;
    const producers = new Map(model.graph!.node!.flatMap((node) => (node.output ?? []).map((output) => [output, node] as const)));
    for (const input of groupNorm.input!.slice(1)) {
      const cast = producers.get(input)!;
      expect(cast.opType).toBe('Cast');
      expect(Number(cast.attribute![0].i)).toBe(onnx.TensorProto.DataType.FLOAT);
    }
  });
});

describe('fuseForGpu', () => {
  it('an fp16 U-Net for CUDA: attention, SkipLayerNorm, BiasSplitGelu (SD widths only) and GroupNorm; for WebGPU no GroupNorm', () => {
    const cuda = tinyUNet('fp16');
    expect(fuseForGpu(cuda, 'cuda')).toEqual({ multiHeadAttention: 2, skipLayerNormalization: 2, biasSplitGelu: 0, groupNorm: count(tinyUNet('fp16'), 'InstanceNormalization') });
    expect(cuda.opsetImport?.some((opset) => opset.domain === 'com.microsoft')).toBe(true);
    const webgpu = tinyUNet('fp16');
    expect(fuseForGpu(webgpu, 'webgpu')).toEqual({ multiHeadAttention: 2, skipLayerNormalization: 2, biasSplitGelu: 1, groupNorm: 0 });
    expect(count(webgpu, 'MultiHeadAttention')).toBe(2);
    expect(count(webgpu, 'Softmax')).toBe(0);
  });

  it('is never applied on the CPU: a pipeline asked for it there loads the graphs as before', async () => {
    const pipeline = await StableDiffusionPipeline.fromPretrained(await ensureTinyModel(), { executionProvider: 'cpu', gpuFusion: true });
    try {
      expect(pipeline.gpuFusions).toEqual({ unet: undefined, vae: undefined });
      expect(pipeline.fusedAttentions.unet).toBeGreaterThan(0);
    } finally {
      await pipeline.release();
    }
  });

  it('a graph built with attention fused keeps its attention nodes and gets the rest', () => {
    const model = tinyUNet('fp16', 'fused');
    expect(fuseForGpu(model, 'webgpu')).toMatchObject({ multiHeadAttention: 0, skipLayerNormalization: 2, biasSplitGelu: 1 });
    expect(count(model, 'MultiHeadAttention')).toBe(2);
  });
});

describe('static input shapes (freeDimensionOverrides, which onnxruntime-node 1.30 does not pass on, done on the graph)', () => {
  it('fixes the named dimensions everywhere they appear; the session reports them and computes the same', async () => {
    const free = tinyUNet();
    const fixed = copy(free);
    const names = fixInputDimensions(fixed, { sample: [2, undefined, 16, 16], encoder_hidden_states: [2, 77, undefined] });
    expect(Object.fromEntries(names)).toEqual({ batch: 2, height: 16, width: 16, sequence: 77 });
    const session = await ort.InferenceSession.create(encodeModel(fixed), { executionProviders: ['cpu'] });
    try {
      expect(session.inputMetadata.map((input) => (input.isTensor ? input.shape : []))).toEqual([[2, 'channels', 16, 16], [2], [2, 77, 32]]);
    } finally {
      await session.release();
    }
    const feeds = unetFeeds();
    expect(maxAbsDifference(await run(free, feeds), await run(fixed, feeds))).toBeLessThan(1e-5);
    await expect(run(fixed, { ...feeds, sample: randomTensor([2, 4, 8, 8], 4) })).rejects.toThrow(/dimension|shape/i);
  });

  it('refuses sizes that contradict each other or the graph', () => {
    expect(() => fixInputDimensions(tinyUNet(), { sample: [2, undefined, 16, 16], encoder_hidden_states: [1, 77, undefined] })).toThrow('dimension batch cannot be both 2 and 1');
    expect(() => fixInputDimensions(tinyUNet(), { encoder_hidden_states: [2, 77, 64] })).toThrow("input encoder_hidden_states's axis 2 is 32, not 64");
    expect(() => fixInputDimensions(tinyUNet(), { sample: [2, 16, 16] })).toThrow('input sample has 4 dimensions, not 3');
  });

  it('a pipeline loaded with a static shape draws what the free-shape one draws, and names the one size it makes', async () => {
    const dir = await ensureTinyModel();
    const request = { prompt: 'a lighthouse at dusk', seed: 3, steps: 2, width: 32, height: 32, guidanceScale: 7.5 };
    const free = await StableDiffusionPipeline.fromPretrained(dir);
    const fixed = await StableDiffusionPipeline.fromPretrained(dir, { staticShape: { width: 32, height: 32, guidance: true }, sequentialGuidance: false });
    try {
      expect(fixed.info).toMatchObject({ fixedSize: true });
      expect(Buffer.from((await fixed.generate(request)).image.pixels)).toEqual(Buffer.from((await free.generate(request)).image.pixels));
      await expect(fixed.generate({ ...request, width: 64 })).rejects.toThrow(/32x32|32 x 32|size/);
    } finally {
      await Promise.all([free.release(), fixed.release()]);
    }
  });
});
