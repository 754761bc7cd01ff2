import { readFileSync } from 'node:fs';
import { expect } from 'vitest';
import { type PipelineOptions, StableDiffusionPipeline } from '../src/pipeline/pipeline.ts';
import type { GenerateRequest } from '../src/pipeline/types.ts';
import { fixturePath, pixelDifference } from './fixtures.ts';

/** The fixtures' tolerance on 8-bit images: diffusers' PyTorch image against ours. */
const MAX_LEVELS = 2;
const MEAN_LEVELS = 0.5;

/** One image from the model in `dir`, the pipeline loaded for it and released after. */
export async function draw(dir: string, request: GenerateRequest, options: PipelineOptions = {}) {
  const pipeline = await StableDiffusionPipeline.fromPretrained(dir, options);
  try {
    return await pipeline.generate(request);
  } finally {
    await pipeline.release();
  }
}

/** A reference image of the fixtures (`.u8`: H×W×3 RGB bytes), by its path below the fixtures folder. */
export function referenceImage(file: string): Uint8Array {
  return readFileSync(fixturePath(file));
}

/** Max and mean absolute difference in 8-bit levels between two RGB images of the same size. */
export function levels(pixels: Uint8Array, reference: Uint8Array): { max: number; mean: number } {
  expect(pixels.length).toBe(reference.length);
  return pixelDifference(pixels, reference);
}

/** Our pixels are the reference image's within the fixtures' tolerance (max 2, mean 0.5 levels); `label` names the case in a failure. */
export function expectMatch(pixels: Uint8Array, referenceFile: string, label?: string): void {
  const { max, mean } = levels(pixels, referenceImage(referenceFile));
  expect(max, label).toBeLessThanOrEqual(MAX_LEVELS);
  expect(mean, label).toBeLessThanOrEqual(MEAN_LEVELS);
}

/** What a fixture's pipeline case asked diffusers for. */
export interface ReferenceCase {
  prompt: string;
  negative_prompt: string | null;
  seed: number;
  steps: number;
  guidance: number;
  width: number;
  height: number;
}

/** A fixture pipeline case as a request: the prompt, seed, steps, guidance and size diffusers used. */
export function requestOf(entry: ReferenceCase): GenerateRequest {
  return {
    prompt: entry.prompt,
    ...(entry.negative_prompt ? { negativePrompt: entry.negative_prompt } : {}),
    seed: entry.seed,
    steps: entry.steps,
    guidanceScale: entry.guidance,
    width: entry.width,
    height: entry.height,
  };
}
