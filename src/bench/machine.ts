import { existsSync, readdirSync, statSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, platform, release, totalmem } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  memoryBytes: number;
  os: string;
  node: string;
  onnxruntime: string;
  executionProvider: string;
  /** 1-minute load average when the measurement started: above the core count, something else was competing. */
  loadAverage: number;
}

export function describeMachine(executionProvider: string): MachineInfo {
  return {
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    cores: availableParallelism(),
    memoryBytes: totalmem(),
    os: `${platform()} ${release()}`,
    node: process.version,
    onnxruntime: ort.env.versions.node ?? ort.env.versions.common,
    executionProvider,
    loadAverage: loadavg()[0],
  };
}

/**
 * Bytes of the ONNX files (graphs and external weights) of the parts the pipeline loads: the text encoder(s), the
 * U-Net, the VAE decoder, and for img2img the VAE encoder.
 */
export function modelFileBytes(modelDir: string, { imageToImage = false } = {}): number {
  const secondTextEncoder = existsSync(join(modelDir, 'text_encoder_2')) ? ['text_encoder_2'] : [];
  const parts = ['text_encoder', ...secondTextEncoder, 'unet', 'vae_decoder', ...(imageToImage ? ['vae_encoder'] : [])];
  let total = 0;
  for (const part of parts) {
    const dir = join(modelDir, part);
    for (const name of readdirSync(dir)) {
      if (name.endsWith('.json')) continue;
      total += statSync(join(dir, name)).size;
    }
  }
  return total;
}

/** The most memory this process has held, from the kernel's own accounting (ru_maxrss). */
export function peakRssBytes(): number {
  return process.resourceUsage().maxRSS * 1024;
}
