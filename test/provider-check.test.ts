import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { OnnxModel, type ExecutionProvider } from '../src/pipeline/onnx-model.ts';
import { cudaStartFailure, libraryFound, providerStartFailure } from '../src/pipeline/provider-check.ts';
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

describe('EXECUTION_PROVIDER=cuda with the provider installed: what is missing, and the one command that fixes it', () => {
  const found = (...present: string[]) => ({ providerInstalled: true, libraryFound: (name: string) => present.includes(name) });
  const cudaLibraries = ['libcuda.so.1', 'libcudart.so.12', 'libcublas.so.12', 'libcublasLt.so.12', 'libcurand.so.10', 'libcufft.so.11'];

  it('no cuDNN 9: names it and its package', () => {
    expect(cudaStartFailure(found(...cudaLibraries))).toBe(
      "EXECUTION_PROVIDER=cuda: libcudnn.so.9 (cuDNN 9 for CUDA 12) cannot be loaded: install it with `sudo apt-get install libcudnn9-cuda-12` (NVIDIA's CUDA apt repository; or run the CUDA container, compose.cuda.yaml) and make sure the linker finds them (ldconfig or LD_LIBRARY_PATH).",
    );
  });

  it('neither CUDA 12 nor cuDNN 9: every library named, both packages in one command', () => {
    const line = cudaStartFailure(found('libcuda.so.1'));
    expect(line).toMatch(/^EXECUTION_PROVIDER=cuda: libcudart\.so\.12 \(the CUDA 12 runtime\), libcublas\.so\.12 .*libcudnn\.so\.9 \(cuDNN 9 for CUDA 12\) cannot be loaded: install them with/);
    expect(line).toContain('`sudo apt-get install cuda-libraries-12-8 libcudnn9-cuda-12`');
  });

  it('no NVIDIA driver: says so first, whatever else is missing', () => {
    expect(cudaStartFailure(found())).toBe(
      'EXECUTION_PROVIDER=cuda: libcuda.so.1 (the NVIDIA driver) cannot be loaded: install the NVIDIA driver (one that runs CUDA 12; `nvidia-smi` must work), or use EXECUTION_PROVIDER=webgpu or cpu.',
    );
  });

  it('a library onnxruntime names that is present on disk but failed anyway is still named', () => {
    const all = found(...cudaLibraries, 'libcudnn.so.9');
    expect(cudaStartFailure(all, 'libcudnn.so.9')).toContain('libcudnn.so.9 (cuDNN 9 for CUDA 12) cannot be loaded');
    expect(cudaStartFailure(all, 'libnvrtc.so.12')).toBe(
      'EXECUTION_PROVIDER=cuda: libnvrtc.so.12 cannot be loaded: install CUDA 12 and cuDNN 9 and add their lib folders to LD_LIBRARY_PATH.',
    );
  });

  it("reads onnxruntime's own error and looks the libraries up on LD_LIBRARY_PATH (this machine has no CUDA)", () => {
    const dir = mkdtempSync(join(tmpdir(), 'cuda-libs-'));
    const saved = process.env.LD_LIBRARY_PATH;
    try {
      for (const library of cudaLibraries) writeFileSync(join(dir, library), '');
      process.env.LD_LIBRARY_PATH = dir;
      expect(libraryFound('libcudart.so.12')).toBe(true);
      expect(libraryFound('libcudnn.so.9')).toBe(false);
      expect(cudaStartFailure({ providerInstalled: true, libraryFound })).toContain('libcudnn.so.9 (cuDNN 9 for CUDA 12) cannot be loaded');
      // onnxruntime's message when the provider itself is absent (as after npm ci): install-cuda, whatever the libraries
      const error = new Error('Failed to load library libonnxruntime_providers_cuda.so with error: libonnxruntime_providers_cuda.so: cannot open shared object file: No such file or directory');
      expect(providerStartFailure('cuda', error)).toContain('npm run install-cuda');
    } finally {
      if (saved === undefined) delete process.env.LD_LIBRARY_PATH;
      else process.env.LD_LIBRARY_PATH = saved;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
