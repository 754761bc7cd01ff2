import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { ExecutionProvider } from './onnx-model.ts';

/**
 * The shared libraries onnxruntime 1.30's CUDA provider loads, what provides each, and the Debian/Ubuntu package
 * that installs it from NVIDIA's CUDA apt repository (the CUDA 12.8 the project's CUDA container uses).
 */
const CUDA_LIBRARIES = [
  ['libcuda.so.1', 'the NVIDIA driver', undefined],
  ['libcudart.so.12', 'the CUDA 12 runtime', 'cuda-libraries-12-8'],
  ['libcublas.so.12', 'cuBLAS for CUDA 12', 'cuda-libraries-12-8'],
  ['libcublasLt.so.12', 'cuBLAS for CUDA 12', 'cuda-libraries-12-8'],
  ['libcurand.so.10', 'cuRAND for CUDA 12', 'cuda-libraries-12-8'],
  ['libcufft.so.11', 'cuFFT for CUDA 12', 'cuda-libraries-12-8'],
  ['libcudnn.so.9', 'cuDNN 9 for CUDA 12', 'libcudnn9-cuda-12'],
] as const;

/** What the CUDA check looks at: whether install-cuda's provider is there, and whether the linker finds a library. */
export interface CudaProbe {
  providerInstalled: boolean;
  libraryFound: (name: string) => boolean;
}

/**
 * Why the CUDA provider cannot start, in one line naming what is missing and the one command that fixes it.
 * `failedLibrary` is the library onnxruntime's own message names, when it names one.
 */
export function cudaStartFailure(probe: CudaProbe, failedLibrary?: string): string {
  if (!probe.providerInstalled) {
    return "EXECUTION_PROVIDER=cuda: onnxruntime-node's CUDA provider is not installed (every npm ci removes it): run `npm run install-cuda` once on a machine with internet access.";
  }
  const missing = CUDA_LIBRARIES.filter(([library]) => !probe.libraryFound(library) || library === failedLibrary);
  if (missing.some(([library]) => library === 'libcuda.so.1')) {
    return 'EXECUTION_PROVIDER=cuda: libcuda.so.1 (the NVIDIA driver) cannot be loaded: install the NVIDIA driver (one that runs CUDA 12; `nvidia-smi` must work), or use EXECUTION_PROVIDER=webgpu or cpu.';
  }
  if (missing.length === 0) {
    const named = failedLibrary ? `${failedLibrary} ` : 'a CUDA 12 or cuDNN 9 library (onnxruntime names it above) ';
    return `EXECUTION_PROVIDER=cuda: ${named}cannot be loaded: install CUDA 12 and cuDNN 9 and add their lib folders to LD_LIBRARY_PATH.`;
  }
  const names = missing.map(([library, what]) => `${library} (${what})`).join(', ');
  const packages = [...new Set(missing.map(([, , debianPackage]) => debianPackage))].join(' ');
  return (
    `EXECUTION_PROVIDER=cuda: ${names} cannot be loaded: install ${missing.length === 1 ? 'it' : 'them'} with \`sudo apt-get install ${packages}\` ` +
    "(NVIDIA's CUDA apt repository; or run the CUDA container, compose.cuda.yaml) and make sure the linker finds them (ldconfig or LD_LIBRARY_PATH)."
  );
}

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
    const failedLibrary = /(lib[\w+.-]+\.so[\d.]*): cannot open shared object/.exec(message)?.[1];
    const probe = { providerInstalled: existsSync(join(onnxruntimeBinaryDir(), 'libonnxruntime_providers_cuda.so')), libraryFound };
    return cudaStartFailure(probe, failedLibrary === 'libonnxruntime_providers_cuda.so' ? undefined : failedLibrary);
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
export function libraryFound(name: string): boolean {
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
