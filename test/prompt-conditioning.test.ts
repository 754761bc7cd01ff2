import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importModel } from '../src/import/import-model.ts';
import { importTextEncoder } from '../src/import/text-encoder.ts';
import { StableDiffusionPipeline } from '../src/pipeline/pipeline.ts';
import { PromptEncoder } from '../src/pipeline/prompt-encoder.ts';
import { MAX_PROMPT_CHUNKS } from '../src/prompt/prompt-tokens.ts';
import { TextEncoder } from '../src/pipeline/text-encoder.ts';
import { ClipTokenizer } from '../src/pipeline/tokenizer.ts';
import { fixturePath, fixturesPresent, maxAbsDiff, pixelDifference, readF32, readFixtureJson } from './fixtures.ts';

// AUTOMATIC1111's conditioning (../shared/fixtures/prompts) was computed with tiny-sd15's tokenizer and the text
// encoder in prompts/tiny-sd15-a1111. Here tiny-sd15 is imported with that text encoder, and
// - the conditioning our pipeline makes from each prompt (our parser, chunks and weights, onnxruntime's run of the
//   imported text encoder) is compared with A1111's;
// - each image is compared with the image the same U-Net, scheduler and VAE draw from A1111's conditioning, which is
//   what diffusers draws when given that conditioning as prompt_embeds (the loop's parity with diffusers is checked
//   on the plain model's reference image below).

interface ConditioningCase {
  id: string;
  prompt: string;
  negative_prompt: string;
  arrays: Record<string, { file: string; shape: number[] }>;
}

const cases: ConditioningCase[] = fixturesPresent ? readFixtureJson<{ cases: ConditioningCase[] }>('prompts', 'conditioning', 'index.json').cases : [];
const reference = (testCase: ConditioningCase, name: string) => readF32('prompts', testCase.arrays[name].file);
const IMAGE = { seed: 0, steps: 10, width: 64, height: 64, guidanceScale: 7.5 };

describe.runIf(fixturesPresent)("AUTOMATIC1111's conditioning end to end: prompt → ids → onnxruntime text encoder → weighted chunks", () => {
  const modelsDir = mkdtempSync(join(tmpdir(), 'prompts-a1111-'));
  let plain: StableDiffusionPipeline;
  let a1111: StableDiffusionPipeline;
  let textEncoder: TextEncoder;
  let prompts: PromptEncoder;

  beforeAll(async () => {
    const imported = await importModel({ source: fixturePath('models', 'tiny-sd15'), name: 'tiny-sd15', modelsDir });
    plain = await StableDiffusionPipeline.fromPretrained(imported.dir);
    const { dir } = await importModel({ source: fixturePath('models', 'tiny-sd15'), name: 'tiny-sd15-a1111', modelsDir });
    await importTextEncoder(fixturePath('prompts', 'tiny-sd15-a1111', 'text_encoder'), join(dir, 'text_encoder'));
    a1111 = await StableDiffusionPipeline.fromPretrained(dir);
    textEncoder = await TextEncoder.load(dir, { executionProvider: 'cpu', clock: { runMs: 0 }, fuseAttention: false });
    prompts = new PromptEncoder([{ tokenizer: await ClipTokenizer.fromDirectory(join(dir, 'tokenizer')), textEncoder }], MAX_PROMPT_CHUNKS);
  }, 120_000);

  afterAll(async () => {
    await Promise.all([plain?.release(), a1111?.release(), textEncoder?.release()]);
    rmSync(modelsDir, { recursive: true, force: true });
  });

  it("draws diffusers' image for the plain model (the loop the comparisons below share)", async () => {
    const { pipeline } = readFixtureJson('models', 'index.json').models['tiny-sd15'];
    const expected = new Uint8Array(readFileSync(fixturePath(pipeline[0].image_u8)));
    const output = await plain.generate({ prompt: pipeline[0].prompt, ...IMAGE });
    const difference = pixelDifference(output.image.pixels, expected);
    expect(difference.max).toBeLessThanOrEqual(2);
    expect(difference.mean).toBeLessThanOrEqual(0.5);
  });

  it.each(cases.map((c) => [c.id, c]))('%s: conditioning within 1e-5 of A1111’s, image within 2/255 of the one drawn from it', async (_id, testCase) => {
    const request = { prompt: testCase.prompt, negativePrompt: testCase.negative_prompt, ...IMAGE };
    const prompt = prompts.tokenize(testCase.prompt, 'a1111', 'prompt');
    const negative = prompts.tokenize(testCase.negative_prompt, 'a1111', 'negative prompt');
    expect(maxAbsDiff((await prompts.encode(prompt)).data, reference(testCase, 'prompt_embeds'))).toBeLessThan(1e-5);
    expect(maxAbsDiff((await prompts.encode(negative)).data, reference(testCase, 'negative_embeds'))).toBeLessThan(1e-5);
    const pair = (await prompts.encodePair(prompt, negative)).data;
    expect(maxAbsDiff(pair.subarray(0, pair.length / 2), reference(testCase, 'negative_embeds_padded'))).toBeLessThan(1e-5);
    expect(maxAbsDiff(pair.subarray(pair.length / 2), reference(testCase, 'prompt_embeds_padded'))).toBeLessThan(1e-5);

    const ours = await a1111.generate(request);

    const promptEmbeds = { prompt: reference(testCase, 'prompt_embeds_padded'), negative: reference(testCase, 'negative_embeds_padded'), width: testCase.arrays.prompt_embeds.shape[2] };
    const fromReference = await a1111.generate({ ...request, promptEmbeds });
    const difference = pixelDifference(ours.image.pixels, fromReference.image.pixels);
    expect(difference.max).toBeLessThanOrEqual(2);
    expect(difference.mean).toBeLessThanOrEqual(0.5);
  });

  it('the comparison can fail: read as plain text, a weighted, long or BREAK prompt draws another image', async () => {
    for (const testCase of cases.filter((c) => /weighted|long|break/.test(c.id))) {
      const request = { prompt: testCase.prompt, negativePrompt: testCase.negative_prompt, ...IMAGE };
      const promptEmbeds = { prompt: reference(testCase, 'prompt_embeds_padded'), negative: reference(testCase, 'negative_embeds_padded'), width: testCase.arrays.prompt_embeds.shape[2] };
      const fromReference = await a1111.generate({ ...request, promptEmbeds });
      const asText = await a1111.generate({ ...request, promptSyntax: 'plain' });
      expect(pixelDifference(asText.image.pixels, fromReference.image.pixels).max, testCase.id).toBeGreaterThan(20);
    }
  });
});
