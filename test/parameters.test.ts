import { describe, expect, it } from 'vitest';
import { formatParameters, parseParameters } from '../src/image/parameters.ts';
import type { GenerationSettings } from '../src/pipeline/types.ts';

const settings: GenerationSettings = {
  prompt: 'a dog wearing hat',
  negativePrompt: 'blurry, low quality',
  steps: 20,
  guidanceScale: 7.5,
  seed: '42',
  width: 512,
  height: 768,
  scheduler: 'PNDM',
  model: 'sd15',
};

describe('AUTOMATIC1111 parameters text', () => {
  it('is written in the PNG Info layout', () => {
    expect(formatParameters(settings)).toBe(
      'a dog wearing hat\nNegative prompt: blurry, low quality\nSteps: 20, Sampler: PNDM, CFG scale: 7.5, Seed: 42, Size: 512x768, Model: sd15',
    );
  });

  it('omits the negative prompt line when there is none', () => {
    expect(formatParameters({ ...settings, negativePrompt: '' }).split('\n')).toHaveLength(2);
  });

  it('reads back what it wrote, including multi-line prompts, quoted values and 64-bit seeds', () => {
    const tricky = { ...settings, prompt: 'line one\nline two: with colon', model: 'my, model', seed: '18446744073709551615', scheduler: 'DPM++ 2M Karras' };
    expect(parseParameters(formatParameters(tricky))).toEqual(tricky);
  });

  it('reads text written by AUTOMATIC1111 itself', () => {
    const text =
      'masterpiece, castle\nNegative prompt: ugly\nSteps: 30, Sampler: Euler a, Schedule type: Automatic, CFG scale: 6, Seed: 1234, Size: 640x384, Model hash: abc123, Model: v1-5-pruned, Version: v1.10.1';
    expect(parseParameters(text)).toEqual({
      prompt: 'masterpiece, castle',
      negativePrompt: 'ugly',
      steps: 30,
      guidanceScale: 6,
      seed: '1234',
      width: 640,
      height: 384,
      scheduler: 'Euler a',
      model: 'v1-5-pruned',
    });
  });

  it('writes an img2img strength as AUTOMATIC1111 does, and reads it back (also from its own img2img text)', () => {
    const img2img = { ...settings, strength: 0.35 };
    expect(formatParameters(img2img).split('\n')[2]).toBe('Steps: 20, Sampler: PNDM, CFG scale: 7.5, Seed: 42, Size: 512x768, Model: sd15, Denoising strength: 0.35');
    expect(parseParameters(formatParameters(img2img))).toEqual(img2img);
    const a1111 = 'a castle\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 9, Size: 512x512, Model: v1-5, Denoising strength: 0.75, Version: v1.10.1';
    expect(parseParameters(a1111).strength).toBe(0.75);
  });

  it('records a tiny decoder as AUTOMATIC1111 records TAESD, and reads that back', () => {
    const tiny = { ...settings, vae: 'sd-vae-ft-mse', tinyDecoder: 'taesd' };
    expect(formatParameters(tiny).split('\n')[2]).toBe('Steps: 20, Sampler: PNDM, CFG scale: 7.5, Seed: 42, Size: 512x768, Model: sd15, VAE: sd-vae-ft-mse, VAE Decoder: TAESD');
    expect(parseParameters(formatParameters(tiny))).toEqual({ ...tiny, tinyDecoder: 'TAESD' });
    const a1111 = 'a castle\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 9, Size: 512x512, Model: v1-5, VAE Decoder: TAESD, Version: v1.10.1';
    expect(parseParameters(a1111).tinyDecoder).toBe('TAESD');
    expect(parseParameters(formatParameters(settings)).tinyDecoder).toBeUndefined();
  });

  it('names the missing field of text it cannot use', () => {
    expect(() => parseParameters('a cat\nSteps: 20, Sampler: DDIM, Seed: 1, Size: 512x512')).toThrow(/CFG scale/);
  });
});
