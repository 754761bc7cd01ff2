/**
 * Known diffusers-layout ONNX Stable Diffusion repositories, and upscalers for the Upscale buttons. Sizes are what
 * `model:pull` downloads (the listed components only, no safety checker, ControlNet or PyTorch weights), read from
 * each repository's file listing; the SDXL ones' from their fp32 parameter counts (their repositories hold PyTorch
 * weights beside the ONNX export, which model:pull leaves).
 */
export interface ModelPreset {
  name: string;
  /** A Stable Diffusion pipeline (the diffusers ONNX layout), or an image upscaler (one ONNX file). */
  kind: 'pipeline' | 'upscaler';
  repo: string;
  revision: string;
  subfolder?: string;
  /** For an upscaler: the repository's file that is the model (nothing else is downloaded). */
  file?: string;
  type: string;
  precision: 'fp32' | 'fp16';
  /** Approximate download, in bytes. */
  bytes: number;
  description: string;
}

const GB = 1e9;

export const PRESETS: readonly ModelPreset[] = [
  {
    name: 'sd-turbo',
    kind: 'pipeline',
    repo: 'TensorStack/SD-Turbo-onnx',
    revision: 'main',
    type: 'SD-Turbo',
    precision: 'fp16',
    bytes: 2.6 * GB,
    description: 'SD-Turbo (distilled SD 2.1): 512x512 in 1-4 steps, the fast choice on CPU and GPU',
  },
  {
    name: 'lcm-dreamshaper',
    kind: 'pipeline',
    repo: 'SimianLuo/LCM_Dreamshaper_v7',
    revision: 'main',
    type: 'LCM',
    precision: 'fp32',
    bytes: 4.3 * GB,
    description: 'LCM Dreamshaper v7 (distilled from an SD 1.5 fine-tune): 512x512 in 4 steps with a guidance embedding; detailed pictures on a CPU',
  },
  {
    name: 'sd-1.5',
    kind: 'pipeline',
    repo: 'onnx-community/stable-diffusion-v1-5-ONNX',
    revision: 'main',
    type: 'SD 1.x',
    precision: 'fp32',
    bytes: 4.3 * GB,
    description: 'Stable Diffusion 1.5, full precision: 512x512, 20-50 steps; best on CPU',
  },
  {
    name: 'sd-1.5-fp16',
    kind: 'pipeline',
    repo: 'TensorStack/stable-diffusion-v1-5-onnx',
    revision: 'main',
    type: 'SD 1.x',
    precision: 'fp16',
    bytes: 2.1 * GB,
    description: 'Stable Diffusion 1.5, half precision: half the download and memory; meant for GPUs',
  },
  {
    name: 'sdxl-turbo',
    kind: 'pipeline',
    repo: 'stabilityai/sdxl-turbo',
    revision: 'main',
    type: 'SDXL-Turbo',
    precision: 'fp32',
    bytes: 13.9 * GB,
    description: 'SDXL-Turbo (distilled SDXL): 512x512 in 1-4 steps; the SDXL for a CPU with more than 14 GB of memory',
  },
  {
    name: 'sdxl-base',
    kind: 'pipeline',
    repo: 'stabilityai/stable-diffusion-xl-base-1.0',
    revision: 'main',
    type: 'SDXL',
    precision: 'fp32',
    bytes: 13.9 * GB,
    description: 'Stable Diffusion XL 1.0 base: 1024x1024, 20-50 steps; meant for GPUs (minutes per image on a CPU)',
  },
  {
    name: 'real-esrgan-x4',
    kind: 'upscaler',
    repo: 'qualcomm/Real-ESRGAN-x4plus',
    // The last revision published under the BSD-3-Clause license.
    revision: '6a7e0c049f123d9f1c81a567c0442cfd3fedf011',
    file: 'Real-ESRGAN-x4plus.onnx',
    type: 'Upscaler ×4',
    precision: 'fp32',
    bytes: 0.067 * GB,
    description: 'Real-ESRGAN x4plus: the model behind the Upscale buttons (×4; ×2 is Lanczos down from it)',
  },
];

/** The Stable Diffusion presets (what AUTO_PULL may name). */
export const PIPELINE_PRESETS: readonly ModelPreset[] = PRESETS.filter((preset) => preset.kind === 'pipeline');

export function findPreset(name: string): ModelPreset | undefined {
  return PRESETS.find((preset) => preset.name === name.toLowerCase());
}
