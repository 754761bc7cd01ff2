import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { ExecutionProvider } from './onnx-model.ts';

/** The shared libraries onnxruntime's CUDA provider loads, and what provides each (onnxruntime 1.30: CUDA 12, cuDNN 9). */
const CUDA_LIBRARIES = [
  ['libcudart.so.12', 'the CUDA 12 runtime'],
  ['libcublasLt.so.12', 'cuBLAS for CUDA 12'],
  ['libcufft.so.11', 'cuFFT for CUDA 12'],
  ['libcudnn.so.9', 'cuDNN 9 for CUDA 12'],
] as const;

/**
 * One line that names what keeps an execution provider from starting and how to fix it, for the errors onnxruntime
 * gives then (its own messages say "Failed to load shared library" or "No supported adapters"); undefined when the
 * error is about something else.
 */
export function providerStartFailure(provider: ExecutionProvider, error: unknown): string | undefined {
  const message = error instanceof Error ? error.message : String(error);
  if (/backend not found/i.test(message)) {
    return `EXECUTION_PROVIDER=${provider}: onnxruntime-node has no ${provider} provider on ${process.platform} (dml is for Windows, coreml for macOS): use cpu, webgpu or cuda.`;
  }
  if (provider === 'cuda' && /shared library|cannot open shared object/i.test(message)) {
    if (!existsSync(join(onnxruntimeBinaryDir(), 'libonnxruntime_providers_cuda.so'))) {
      return 'EXECUTION_PROVIDER=cuda: onnxruntime-node\'s CUDA provider is not installed (every npm ci removes it): run `npm run install-cuda` once on a machine with internet access.';
    }
    const missing = CUDA_LIBRARIES.filter(([library]) => !libraryFound(library)).map(([library, what]) => `${library} (${what})`);
    const names = missing.length > 0 ? missing.join(', ') : 'a CUDA 12 or cuDNN 9 library (onnxruntime names it above)';
    return `EXECUTION_PROVIDER=cuda: ${names} cannot be loaded: install CUDA 12 and cuDNN 9 and add their lib folders to LD_LIBRARY_PATH.`;
  }
  if (provider === 'webgpu' && /adapter/i.test(message)) {
    if (process.platform === 'linux' && !libraryFound('libvulkan.so.1')) {
      return 'EXECUTION_PROVIDER=webgpu: the Vulkan loader libvulkan.so.1 is missing: install it (apt-get install libvulkan1) with the GPU driver\'s Vulkan support, or use EXECUTION_PROVIDER=cpu.';
    }
    return 'EXECUTION_PROVIDER=webgpu: no GPU adapter was found: install the GPU driver with its Vulkan (Linux), D3D12 (Windows) or Metal (macOS) support, or use EXECUTION_PROVIDER=cpu.';
  }
  return undefined;
}

/** Where onnxruntime-node keeps its native libraries for this platform (and where install-cuda puts the CUDA provider). */
function onnxruntimeBinaryDir(): string {
  const packageDir = dirname(createRequire(import.meta.url).resolve('onnxruntime-node/package.json'));
  return join(packageDir, 'bin', 'napi-v6', process.platform, process.arch);
}

/** Whether the dynamic linker would find the library: in LD_LIBRARY_PATH or in its cache (ldconfig -p). */
function libraryFound(name: string): boolean {
  const paths = (process.env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean);
  if (paths.some((dir) => existsSync(join(dir, name)))) return true;
  for (const ldconfig of ['ldconfig', '/sbin/ldconfig', '/usr/sbin/ldconfig']) {
    try {
      return execFileSync(ldconfig, ['-p'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).includes(`${name} `);
    } catch {
      // not this one
    }
  }
  return false;
}
