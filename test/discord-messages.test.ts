import { randomBytes } from 'node:crypto';
import sharp from 'sharp';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { planAnimations, planAttachments, type OutgoingFile } from '../src/discord/attachments.ts';
import { loadCommands } from '../src/discord/commands.ts';
import { decodeButton, encodeButton, MAX_CUSTOM_ID_LENGTH } from '../src/discord/custom-id.ts';
import { promptPreview, statusText } from '../src/discord/job-messages.ts';
import { optionsFromEmbed, optionsFromSettings, resultEmbed } from '../src/discord/result-embed.ts';
import { ThrottledEditor } from '../src/discord/throttled-editor.ts';
import { parseParameters } from '../src/image/parameters.ts';
import { encodePng, readPngParameters } from '../src/image/png.ts';
import type { GeneratedImage, JobResult } from '../src/jobs/runner.ts';

const settings = {
  prompt: 'a lighthouse, stormy sea',
  negativePrompt: 'blurry',
  steps: 25,
  guidanceScale: 7.5,
  seed: '18446744073709551615',
  width: 512,
  height: 768,
  scheduler: 'DPM++ 2M Karras',
  model: 'stable-diffusion-v1-5',
};
const timings = { tokenizeMs: 1, textEncoderMs: 2, denoiseMs: 3, vaeMs: 4, totalMs: 10, onnxMs: 9 };

async function noiseImage(width: number, height: number, seed: string): Promise<GeneratedImage> {
  const parameters = `noise ${seed}\nSteps: 2, Sampler: Euler, CFG scale: 7, Seed: ${seed}, Size: ${width}x${height}, Model: tiny`;
  const png = await encodePng({ width, height, pixels: new Uint8Array(randomBytes(width * height * 3)) }, parameters);
  return { png, parameters, timings, settings: { ...settings, seed, width, height } };
}

async function flatImage(width: number, height: number, seed: string): Promise<GeneratedImage> {
  const parameters = `flat ${seed}\nSteps: 2, Sampler: Euler, CFG scale: 7, Seed: ${seed}, Size: ${width}x${height}, Model: tiny`;
  const pixels = new Uint8Array(width * height * 3);
  for (let index = 0; index < pixels.length; index++) pixels[index] = (index * 7) % 251 > 125 ? 200 : 40;
  const png = await encodePng({ width, height, pixels }, parameters);
  return { png, parameters, timings, settings: { ...settings, seed, width, height } };
}

async function rawPixels(image: Uint8Array | Buffer): Promise<Buffer> {
  return sharp(image).removeAlpha().raw().toBuffer();
}

describe('custom_id codec', () => {
  it('round-trips every action under the 100-character limit', () => {
    const actions = [
      { kind: 'reroll' },
      { kind: 'delete', requesterId: '18446744073709551615' },
      { kind: 'cancel', jobId: 'Ab3_x-9Qz1' },
      { kind: 'vary', amount: 'subtle', image: 0 },
      { kind: 'vary', amount: 'strong', image: 3 },
      { kind: 'upscale', factor: 2, creative: false, image: 1 },
      { kind: 'upscale', factor: 4, creative: false, image: 0 },
      { kind: 'upscale', factor: 2, creative: true, image: 2 },
      { kind: 'remix' },
      { kind: 'remix-submit' },
    ] as const;
    for (const action of actions) {
      const customId = encodeButton(action);
      expect(customId.length).toBeLessThan(MAX_CUSTOM_ID_LENGTH);
      expect(decodeButton(customId)).toEqual(action);
    }
  });

  it('ignores ids it did not make', () => {
    const made = ['other:reroll', 'imagine:delete:abc', 'imagine:cancel', 'imagine:reroll:extra', 'imagine:launch:1'];
    const unknownActions = ['imagine:vary:wild:0', 'imagine:vary:subtle', 'imagine:vary:subtle:x', 'imagine:upscale:3:0', 'imagine:upscale:2:10', 'imagine:remix:1'];
    for (const customId of [...made, ...unknownActions]) {
      expect(decodeButton(customId)).toBeUndefined();
    }
  });
});

describe('result embed', () => {
  it('holds every setting and reads back into the same job', () => {
    const result: JobResult = {
      elapsedMs: 12_345,
      images: [0, 1].map((index) => ({
        png: new Uint8Array(),
        parameters: '',
        timings,
        settings: { ...settings, seed: String(41n + BigInt(index)) },
      })),
    };
    const embed = resultEmbed(result).toJSON();
    expect(embed.description).toBe('a lighthouse, stormy sea');
    expect(Object.fromEntries((embed.fields ?? []).map((field) => [field.name, field.value]))).toEqual({
      'Negative prompt': 'blurry',
      Seed: '41, 42',
      Steps: '25',
      Guidance: '7.5',
      Scheduler: 'DPM++ 2M Karras',
      Size: '512x768',
      Model: 'stable-diffusion-v1-5',
      Time: '12.3 s',
    });
    expect(optionsFromEmbed(JSON.parse(JSON.stringify(embed)))).toEqual({
      prompt: 'a lighthouse, stormy sea',
      negativePrompt: 'blurry',
      seed: '41',
      steps: 25,
      guidance: 7.5,
      size: { width: 512, height: 768 },
      scheduler: 'DPM++ 2M Karras',
      model: 'stable-diffusion-v1-5',
      decoder: 'full',
      count: 2,
    });
  });

  it('escapes the prompts it shows and reads them back exactly; blank or too long negative prompts get no field', () => {
    const job = (negativePrompt: string, prompt = settings.prompt): JobResult => ({
      elapsedMs: 1000,
      images: [{ png: new Uint8Array(), parameters: '', timings, settings: { ...settings, prompt, negativePrompt } }],
    });
    const tricky = ['[nitro](https://x.example) \\[a\\] \\\\ *b* <@1> `c` ~~d~~ ||e|| > f', '# heading\n - list\n+ plus \\(weight\\)', '\\', 'plain'];
    for (const prompt of tricky) {
      const embed = JSON.parse(JSON.stringify(resultEmbed(job(prompt, prompt)).toJSON()));
      expect(optionsFromEmbed(embed)).toMatchObject({ prompt, negativePrompt: prompt });
    }
    expect(resultEmbed(job(' \t ')).toJSON().fields?.map((field) => field.name)).not.toContain('Negative prompt');
    const long = resultEmbed(job('*'.repeat(600))).toJSON();
    expect([...(long.fields?.find((field) => field.name === 'Negative prompt')?.value ?? '')].length).toBeLessThanOrEqual(1024);
    expect(optionsFromEmbed(JSON.parse(JSON.stringify(long)))).toBeUndefined();
  });

  it('names the LoRAs an imported model carries and a replacement VAE, escaped, and reads back the same job', () => {
    const result: JobResult = {
      elapsedMs: 1000,
      images: [{ png: new Uint8Array(), parameters: '', timings, settings: { ...settings, loras: [{ name: 'detail_*tweaker*', weight: 0.8 }, { name: 'style', weight: 1 }], vae: 'taesd' } }],
    };
    const embed = JSON.parse(JSON.stringify(resultEmbed(result).toJSON()));
    const fields = Object.fromEntries((embed.fields as { name: string; value: string }[]).map((field) => [field.name, field.value]));
    expect(fields).toMatchObject({ LoRA: 'detail\\_\\*tweaker\\* 0.8, style 1', VAE: 'taesd', Model: 'stable-diffusion-v1-5' });
    expect(optionsFromEmbed(embed)).toMatchObject({ model: 'stable-diffusion-v1-5', seed: settings.seed });
  });

  it('names the tiny decoder that decoded the images, and a job read back keeps it', () => {
    const result: JobResult = { elapsedMs: 1000, images: [{ png: new Uint8Array(), parameters: '', timings, settings: { ...settings, tinyDecoder: 'taesd_v1*' } }] };
    const embed = JSON.parse(JSON.stringify(resultEmbed(result).toJSON()));
    expect(embed.fields).toContainEqual({ name: 'Decoder', value: 'tiny (taesd\\_v1\\*)', inline: true });
    expect(optionsFromEmbed(embed)?.decoder).toBe('tiny');
    expect(optionsFromSettings([{ ...settings, tinyDecoder: 'TAESD' }])?.decoder).toBe('tiny');
    expect(optionsFromSettings([settings])?.decoder).toBe('full');
  });

  it('reads embeds written before prompts were escaped', () => {
    const fields = [
      { name: 'Seed', value: '5' },
      { name: 'Steps', value: '20' },
      { name: 'Guidance', value: '7' },
      { name: 'Scheduler', value: 'Euler' },
      { name: 'Size', value: '512x512' },
    ];
    expect(optionsFromEmbed({ description: 'a \\(castle\\), (fog:1.2)', fields })?.prompt).toBe('a \\(castle\\), (fog:1.2)');
  });

  it('refuses embeds that are not job records', () => {
    expect(optionsFromEmbed({ description: 'hello' })).toBeUndefined();
    expect(optionsFromEmbed({ description: 'x', fields: [{ name: 'Seed', value: 'abc' }] })).toBeUndefined();
  });

  it('rebuilds the job from PNG parameters as well', () => {
    expect(optionsFromSettings([settings, { ...settings, seed: '0' }])).toMatchObject({
      seed: settings.seed,
      count: 2,
      size: { width: 512, height: 768 },
      model: 'stable-diffusion-v1-5',
    });
  });
});

describe('status text', () => {
  it('shows the queue position, the model loading, and step progress', () => {
    expect(statusText({ state: 'waiting', position: 3, modelLoading: false })).toBe('⏳ Queued — #3 in line.');
    expect(statusText({ state: 'waiting', position: 1, modelLoading: false })).toBe('⏳ You are next in the queue.');
    expect(statusText({ state: 'waiting', position: 2, modelLoading: true })).toBe('⏳ The model is still loading — you are #2 in the queue.');
    expect(statusText({ state: 'running', image: 2, images: 4, step: 5, totalSteps: 20 })).toBe(
      '🎨 Generating image 2/4 — step 5/20  ▰▰▰▱▱▱▱▱▱▱▱▱',
    );
    expect(statusText({ state: 'running', image: 1, images: 1, step: 0, totalSteps: 20, loadingModel: 'sd-turbo' })).toBe('📦 Loading the model sd-turbo…');
  });

  it('quotes the prompt without letting it format the message', () => {
    expect(promptPreview({ prompt: '**bold**\n> quote', count: 1 })).toBe('> \\*\\*bold\\*\\* \\> quote');
    expect(promptPreview({ prompt: 'x'.repeat(500), count: 1 })).toHaveLength(2 + 120);
    expect([...promptPreview({ prompt: '🦊'.repeat(500), count: 1 })]).toHaveLength(2 + 120);
    expect(promptPreview({ prompt: '[free nitro](https://x.example)', count: 1 })).toBe('> \\[free nitro\\](https://x.example)');
  });
});

describe('ThrottledEditor', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('sends at most one edit per interval after the previous one completed, always the newest, and the final one last', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const sent: { payload: number; at: number }[] = [];
    const start = performance.now();
    // Each edit takes Discord 5 ms to answer.
    const editor = new ThrottledEditor<number>(
      async (payload) => {
        sent.push({ payload, at: performance.now() - start });
        await new Promise((resolve) => setTimeout(resolve, 5));
      },
      100,
      (error) => {
        throw error;
      },
    );
    // An update every 10 ms for 300 ms.
    for (let payload = 1; payload <= 30; payload++) {
      editor.update(payload);
      await vi.advanceTimersByTimeAsync(10);
    }
    const finished = editor.finish(99);
    await vi.advanceTimersByTimeAsync(10);
    await finished;
    editor.update(100);
    await vi.advanceTimersByTimeAsync(150);

    // The first at once; each next one 100 ms after the previous answer (5 ms), with the newest update by then;
    // the final one after the edit in flight, unthrottled; nothing after it.
    expect(sent).toEqual([
      { payload: 1, at: 0 },
      { payload: 11, at: 105 },
      { payload: 21, at: 210 },
      { payload: 99, at: 300 },
    ]);
  });

  it('keeps going after a failed edit', async () => {
    const errors: unknown[] = [];
    const sent: number[] = [];
    const editor = new ThrottledEditor<number>(
      async (payload) => {
        if (payload === 1) throw new Error('500');
        sent.push(payload);
      },
      0,
      (error) => errors.push(error),
    );
    editor.update(1);
    await new Promise((resolve) => setTimeout(resolve, 5));
    editor.update(2);
    await editor.finish(3);
    expect(errors).toHaveLength(1);
    expect(sent).toEqual([2, 3]);
  });
});

describe('planAttachments', () => {
  it('keeps the PNGs as they are when they fit', async () => {
    const images = [await noiseImage(64, 64, '1'), await noiseImage(64, 64, '2')];
    const plan = await planAttachments(images, 10 * 1024 * 1024, 'imagine-1');
    expect(plan.tooLarge).toEqual([]);
    expect(plan.batches.map((batch) => batch.map((file) => file.name))).toEqual([['imagine-1-1.png', 'imagine-1-2.png']]);
    expect(readPngParameters(plan.batches[0][1].data)).toBe(images[1].parameters);
  });

  it('switches to lossless WebP, keeping the parameters, when the PNGs are over the limit', async () => {
    const images = [await flatImage(256, 256, '1'), await flatImage(256, 256, '2')];
    const pngBytes = images.reduce((sum, image) => sum + image.png.length, 0);
    const plan = await planAttachments(images, pngBytes - 1, 'imagine-1');
    expect(plan.batches).toHaveLength(1);
    const [first] = plan.batches[0];
    expect(first.name).toBe('imagine-1-1.webp');
    expect(first.data.length).toBeLessThan(images[0].png.length);
    expect(await rawPixels(first.data)).toEqual(await rawPixels(images[0].png));
    const exif = (await sharp(first.data).metadata()).exif;
    expect(exif?.toString('latin1')).toContain('Seed: 1, Size: 256x256');
  });

  it('spreads images over several messages, and names those that cannot fit at all', async () => {
    const images = [await noiseImage(64, 64, '1'), await noiseImage(64, 64, '2'), await noiseImage(128, 128, '3')];
    const smallSize = Math.max(images[0].png.length, images[1].png.length);
    const plan = await planAttachments(images, smallSize + 100, 'imagine-1');
    expect(plan.batches.map((batch) => batch.map((file) => file.name))).toEqual([['imagine-1-1.png'], ['imagine-1-2.png']]);
    expect(plan.tooLarge.map((file) => file.name)).toEqual([expect.stringMatching(/^imagine-1-3\.(png|webp)$/)]);
    expect(plan.tooLarge[0].bytes).toBeGreaterThan(smallSize + 100);
    for (const batch of plan.batches) expect(batch.reduce((sum, file) => sum + file.data.length, 0)).toBeLessThanOrEqual(smallSize + 100);
  });
});

describe('planAnimations', () => {
  const file = (name: string, bytes: number): OutgoingFile => ({ name, data: Buffer.alloc(bytes) });
  const names = (batches: OutgoingFile[][]) => batches.map((batch) => batch.map((placed) => placed.name));
  /** Images whose animations are `bytes` long (none where undefined), each with a 30x10 strip of one colour. */
  async function animated(...bytes: (number | undefined)[]): Promise<GeneratedImage[]> {
    const strip = await sharp({ create: { width: 30, height: 10, channels: 3, background: '#c04010' } }).jpeg().toBuffer();
    return bytes.map((length) => ({ ...(length !== undefined && { animation: { data: new Uint8Array(length), format: 'webp', steps: [1], width: 10, height: 10, strip } }) }) as GeneratedImage);
  }

  it('puts each animation beside its image, and one strip with a row per image beside the first', async () => {
    const images = await animated(1000, undefined, 1000);
    const plan = await planAnimations({ batches: [[file('i-1.png', 100), file('i-2.png', 100), file('i-3.png', 100)]], tooLarge: [] }, images, 10_000, 'i');
    expect(names(plan.batches)).toEqual([['i-1.png', 'i-2.png', 'i-3.png', 'i-1-steps.webp', 'i-3-steps.webp', 'i-steps.jpg']]);
    expect(plan.strip?.name).toBe('i-steps.jpg');
    expect(await sharp(plan.strip!.data).metadata()).toMatchObject({ format: 'jpeg', width: 30, height: 20 });
  });

  it('moves an animation that does not fit its image’s message to a message after the images', async () => {
    const images = await animated(5000, 7000);
    const plan = await planAnimations({ batches: [[file('i-1.png', 4000)], [file('i-2.png', 4000)]], tooLarge: [] }, images, 10_000, 'i');
    expect(names(plan.batches)).toEqual([['i-1.png', 'i-1-steps.webp', 'i-steps.jpg'], ['i-2.png'], ['i-2-steps.webp']]);
  });

  it('keeps to 10 files a message (the strip goes beside a later animation), and names an animation over the limit on its own', async () => {
    const images = await animated(100, 100, 20_000, undefined, undefined, undefined, undefined, undefined, undefined);
    const pictures = images.map((_, index) => file(`i-${index + 1}.png`, 100));
    const plan = await planAnimations({ batches: [pictures], tooLarge: [] }, images, 10_000, 'i');
    expect(names(plan.batches)).toEqual([[...pictures.map((picture) => picture.name), 'i-1-steps.webp'], ['i-2-steps.webp', 'i-steps.jpg']]);
    expect(plan.tooLarge).toEqual([{ name: 'i-3-steps.webp', bytes: 20_000 }]);
  });
});

describe('commands', () => {
  it('loads /imagine with the options the issue asks for', async () => {
    const commands = await loadCommands();
    const imagine = commands.get('imagine')?.data.toJSON();
    expect(imagine?.options?.map((option) => option.name)).toEqual([
      'prompt',
      'negative_prompt',
      'seed',
      'steps',
      'guidance',
      'size',
      'scheduler',
      'count',
      'model',
      'decoder',
      'image',
      'strength',
      'steps_video',
    ]);
    const byName = Object.fromEntries((imagine?.options ?? []).map((option) => [option.name, option as unknown as Record<string, unknown>]));
    expect(byName.prompt).toMatchObject({ required: true, max_length: 1000 });
    expect(byName.count).toMatchObject({ min_value: 1, max_value: 4 });
    expect(byName.size).toMatchObject({ autocomplete: true });
    expect((byName.scheduler.choices as { value: string }[]).map((choice) => choice.value)).toContain('DPM++ 2M Karras');
    expect((byName.decoder.choices as { value: string }[]).map((choice) => choice.value)).toEqual(['full', 'tiny']);
    expect(byName.steps_video).toMatchObject({ type: 5 });
  });

  it('parses PNG parameters written by the pipeline', async () => {
    const image = await noiseImage(64, 64, '5');
    expect(parseParameters(readPngParameters(image.png) ?? '')).toMatchObject({ seed: '5', width: 64, height: 64 });
  });
});
