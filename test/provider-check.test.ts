import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { OnnxModel, type ExecutionProvider } from '../src/pipeline/onnx-model.ts';
import { ensureTinyModel } from '../src/tiny-model/index.ts';

let unetPath: string;
beforeAll(async () => {
  unetPath = join(await ensureTinyModel(), 'unet', 'model.onnx');
});

async function loadError(executionProvider: ExecutionProvider): Promise<string> {
  try {
    await OnnxModel.load(unetPath, 'unet', { executionProvider, clock: { runMs: 0 }, fuseAttention: false });
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error(`${executionProvider} started on this machine`);
}

// The machines the tests run on: Linux, no GPU, onnxruntime-node installed by `npm ci` with install scripts off.
describe('an execution provider that cannot start', () => {
  it('cuda without the provider that npm ci leaves out: one line pointing at npm run install-cuda', async () => {
    const ortBin = join('node_modules', 'onnxruntime-node', 'bin', 'napi-v6', process.platform, process.arch);
    expect(existsSync(join(ortBin, 'libonnxruntime_providers_cuda.so'))).toBe(false);
    expect(await loadError('cuda')).toBe(
      "EXECUTION_PROVIDER=cuda: onnxruntime-node's CUDA provider is not installed (every npm ci removes it): run `npm run install-cuda` once on a machine with internet access.",
    );
  });

  it('webgpu without a GPU adapter, and a provider of another platform: one line each, naming the fix', async () => {
    expect(await loadError('webgpu')).toMatch(/^EXECUTION_PROVIDER=webgpu: (the Vulkan loader libvulkan\.so\.1 is missing: install it \(apt-get install libvulkan1\)|no GPU adapter was found: install the GPU driver)[^\n]*or use EXECUTION_PROVIDER=cpu\.$/);
    expect(await loadError('dml')).toBe('EXECUTION_PROVIDER=dml: onnxruntime-node has no dml provider on linux (dml is for Windows, coreml for macOS): use cpu, webgpu or cuda.');
  });
});
