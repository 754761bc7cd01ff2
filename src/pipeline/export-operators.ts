import { basename, join } from 'node:path';
import type { ModelConfig } from './model-config.ts';
import type { ExecutionProvider } from './onnx-model.ts';
import { readOnnxOutline } from './onnx-outline.ts';

/**
 * onnxruntime's fused operators (domain com.microsoft) that exports optimized for one GPU provider use, which its
 * CPU provider has no kernel for, and the providers that have one (onnxruntime 1.30's kernel registrations). Such
 * an export (onnxruntime/sd-turbo, onnxruntime/sdxl-turbo: built for CUDA; Olive's DirectML exports) fails only
 * after minutes of loading elsewhere, so it is recognised from its graphs first.
 */
export const GPU_ONLY_OPERATORS: Readonly<Record<string, readonly ExecutionProvider[]>> = {
  GroupNorm: ['cuda', 'dml'],
  SkipGroupNorm: ['cuda'],
  BiasSplitGelu: ['cuda', 'dml', 'webgpu'],
  BiasAdd: ['cuda', 'dml', 'webgpu'],
  NhwcConv: ['cuda', 'dml'],
  NhwcFusedConv: ['cuda'],
};

const PROVIDER_NAMES: Record<ExecutionProvider, string> = {
  cpu: 'cpu',
  cuda: 'cuda (NVIDIA GPUs)',
  dml: 'dml (DirectML, Windows)',
  coreml: 'coreml',
  webgpu: 'webgpu',
};

/**
 * Throws, naming the providers the export needs and a model that runs on `provider`, when one of the model's
 * graphs (those the pipeline loads; the VAE decoder from `vaeDir` when given) uses operators `provider` cannot
 * run. Reads only the graphs' node lists: seconds at most, weights are skipped.
 */
export async function checkModelRunsOn(provider: ExecutionProvider, config: ModelConfig, vaeDir: string = config.dir): Promise<void> {
  const graphs = [
    ...(config.sdxl ? ['text_encoder', 'text_encoder_2'] : ['text_encoder']).map((label) => ({ label, path: join(config.dir, label, 'model.onnx') })),
    { label: 'unet', path: join(config.dir, 'unet', 'model.onnx') },
    { label: 'vae_decoder', path: join(vaeDir, 'vae_decoder', 'model.onnx') },
  ];
  for (const { label, path } of graphs) {
    const { microsoftOperators } = await readOnnxOutline(path);
    const missing = microsoftOperators.filter((operator) => GPU_ONLY_OPERATORS[operator] && !GPU_ONLY_OPERATORS[operator].includes(provider));
    if (missing.length === 0) continue;
    const providers = (Object.keys(PROVIDER_NAMES) as ExecutionProvider[]).filter((candidate) => missing.every((operator) => GPU_ONLY_OPERATORS[operator].includes(candidate)));
    const needs = providers.length > 0 ? `only ${providers.map((candidate) => `EXECUTION_PROVIDER=${PROVIDER_NAMES[candidate]}`).join(' or ')} can run` : 'no single provider runs';
    const alternative = `npm run model:pull -- ${config.sdxl ? 'sdxl-turbo' : 'sd-turbo'}`;
    throw new Error(
      `${basename(config.dir)} is an export optimized for one kind of GPU: its ${label} uses onnxruntime's ${missing.join(', ')} operators, which ${needs} (this bot runs ${provider}). ` +
        `Use it there, or a model exported for every provider, e.g. ${alternative}.`,
    );
  }
}
