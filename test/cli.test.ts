import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCommandLine, UsageError } from '../src/cli/command-line.ts';
import { IMAGINE_SPEC, readImagineArguments } from '../src/cli/imagine-arguments.ts';
import { formatParameters, parseParameters } from '../src/image/parameters.ts';
import { readPngParameters } from '../src/image/png.ts';
import { SCHEDULERS } from '../src/schedulers/index.ts';
import { writeTinyModel } from '../src/tiny-model/index.ts';
import { entryPoint } from './entry-point.ts';

const run = promisify(execFile);
const projectRoot = resolve(fileURLToPath(import.meta.url), '..', '..');
const root = mkdtempSync(join(tmpdir(), 'imagine-cli-'));
const modelDir = join(root, 'tiny');

function imagine(args: string[]) {
  return run(process.execPath, [entryPoint('src/cli/imagine.ts'), ...args], {
    cwd: projectRoot,
    env: { ...process.env, SD_MODEL_DIR: '' },
  });
}

/** The EXIF UserComment of a JPEG as AUTOMATIC1111 reads it with piexif: UTF-16 big-endian after "UNICODE\0". */
async function jpegUserComment(jpeg: Buffer): Promise<string | undefined> {
  const exif = (await sharp(jpeg).metadata()).exif;
  const at = exif?.indexOf('UNICODE\0', 0, 'latin1') ?? -1;
  if (!exif || at < 0) return undefined;
  // The comment runs to the end of the EXIF block written for it.
  return Buffer.from(exif.subarray(at + 8)).swap16().toString('utf16le');
}

beforeAll(() => writeTinyModel(modelDir));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('imagine CLI', () => {
  it('writes a PNG whose parameters list the prompt, seed and steps', async () => {
    const out = join(root, 'dog.png');
    const { stdout } = await imagine(['a dog wearing hat', '--seed', '42', '--steps', '20', '--size', '64x64', '--model', modelDir, '--out', out]);
    expect(stdout).toContain('Seed: 42');
    expect(stdout).toContain(out);
    const settings = parseParameters(readPngParameters(readFileSync(out))!);
    expect(settings).toMatchObject({ prompt: 'a dog wearing hat', seed: '42', steps: 20, width: 64, height: 64, scheduler: 'PNDM' });
  });

  it('writes a JPEG preview after each step into --preview-dir (made when missing), and the image unchanged', async () => {
    const previewDir = join(root, 'previews', 'fox');
    const args = ['a fox', '--seed', '5', '--steps', '12', '--size', '64x64', '--scheduler', 'Euler', '--model', modelDir];
    await imagine([...args, '--out', join(root, 'fox.png'), '--preview-dir', previewDir]);
    const names = readdirSync(previewDir).sort();
    expect(names).toEqual(Array.from({ length: 11 }, (_, index) => `step-${String(index + 1).padStart(2, '0')}.jpg`));
    for (const name of names) expect(await sharp(join(previewDir, name)).metadata()).toMatchObject({ format: 'jpeg', width: 384, height: 384 });
    await imagine([...args, '--out', join(root, 'fox-plain.png')]);
    expect(readFileSync(join(root, 'fox.png')).equals(readFileSync(join(root, 'fox-plain.png')))).toBe(true);
  });

  it('writes the denoising as an animation for --steps-video, one frame per step, in the format its name asks for', async () => {
    const args = ['a fox', '--seed', '5', '--steps', '7', '--size', '96x64', '--scheduler', 'Euler', '--model', modelDir, '--out', join(root, 'fox-video.png')];
    const { stdout } = await imagine([...args, '--steps-video', join(root, 'fox.gif')]);
    expect(stdout).toContain(`Saved ${join(root, 'fox.gif')} (7 frames, 96x64)`);
    expect(await sharp(join(root, 'fox.gif'), { animated: true }).metadata()).toMatchObject({ format: 'gif', pages: 7, width: 96, pageHeight: 64 });
    const refused = await imagine([...args, '--steps-video', join(root, 'fox.mp4')]).catch((error) => error);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/^imagine: --steps-video must end in \.webp or \.gif/);
  });

  it('writes a JPEG for --out x.jpg, its settings in EXIF as AUTOMATIC1111 stores them', async () => {
    const out = join(root, 'café.jpg');
    await imagine(['un café ☕ au lait', '--seed', '7', '--steps', '2', '--size', '96x64', '--guidance', '1', '--model', modelDir, '--out', out]);
    const jpeg = readFileSync(out);
    const metadata = await sharp(jpeg).metadata();
    expect([metadata.format, metadata.width, metadata.height]).toEqual(['jpeg', 96, 64]);
    const comment = await jpegUserComment(jpeg);
    expect(parseParameters(comment!)).toMatchObject({ prompt: 'un café ☕ au lait', seed: '7', steps: 2, guidanceScale: 1, width: 96, height: 64 });
    expect(comment).toBe(formatParameters(parseParameters(comment!)));
  });

  it('refuses a bad command line with one line and status 2, before the model loads', async () => {
    const cases: [string[], RegExp][] = [
      [['a cat', '--steps', '1000'], /^imagine: steps must be between 1 and 150 for tiny\. \(see --help\)\n$/],
      [['a cat', '--guidance', '-1'], /^imagine: guidance must be a number of at least 0\. \(see --help\)\n$/],
      [['a cat', '--bogus'], /^imagine: Unknown option '--bogus'[^\n]*\(see --help\)\n$/],
      [['1'.repeat(700)], /^imagine: The prompt is 700 tokens long \(10 chunks\); at most 600 fit \(8 chunks of 75\)\. Shorten it\. \(see --help\)\n$/],
      [['(a:1.2.3) cat'], /^imagine: The prompt has a malformed weight: /],
      [['a cat', '--prompt-syntax', 'sdxl'], /^imagine: --prompt-syntax must be one of a1111, plain \(got "sdxl"\) \(see --help\)\n$/],
    ];
    const failures = await Promise.all(cases.map(([args]) => imagine([...args, '--model', modelDir]).catch((error) => error)));
    for (const [index, failure] of failures.entries()) {
      expect(failure.code).toBe(2);
      expect(failure.stderr).toMatch(cases[index][1]);
    }
  });

  it('reads the prompt as plain text with --prompt-syntax plain: brackets are words, and a long prompt is cut, not refused', async () => {
    const out = join(root, 'plain.png');
    await imagine(['(a:1.2.3) cat ' + '1'.repeat(700), '--prompt-syntax', 'plain', '--steps', '1', '--size', '64x64', '--model', modelDir, '--out', out]);
    expect(parseParameters(readPngParameters(readFileSync(out))!).prompt).toBe('(a:1.2.3) cat ' + '1'.repeat(700));
  });

  it('prints its flags with their defaults and the scheduler names on --help', async () => {
    const { stdout } = await imagine(['--help']);
    expect(stdout).toMatch(/^Usage: npm run imagine -- "<prompt>" \[options\]/);
    for (const flag of ['--negative', '--seed', '--steps', '--guidance', '--size', '--scheduler', '--model', '--out', '--help']) expect(stdout).toContain(flag);
    for (const scheduler of SCHEDULERS) expect(stdout).toContain(`"${scheduler.name}"`);
    expect(stdout).toContain("(default: the model's native size)");
    expect(stdout).toContain('(default: imagine-<seed>.png)');
  });
});

describe('tokens CLI', () => {
  const tokens = (args: string[]) => run(process.execPath, [entryPoint('src/cli/tokens.ts'), ...args, '--model', modelDir], { cwd: projectRoot, env: { PATH: process.env.PATH } });

  it('prints the token view of the model it is given, and exits 1 when the model would refuse the prompt', async () => {
    const { stdout } = await tokens(['a (red:1.2) fox BREAK dog']);
    expect(stdout).toMatch(/^tiny · 4 tokens in 2 chunks of 75 \(at most 8\) · AUTOMATIC1111 syntax\nchunk 1 · 3\/75 tokens · ends at BREAK\n/);
    expect(stdout).toMatch(/^ {2}2 +\d+  red<\/w>  ×1\.2$/m);
    const plain = await tokens(['a (red:1.2) fox', '--prompt-syntax', 'plain']);
    expect(plain.stdout).toMatch(/^tiny · 9 tokens of 75 · plain text \(diffusers\)\n/);
    const refused = await tokens(['1'.repeat(700)]).catch((error) => error);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toBe('tokens: The prompt is 700 tokens long (10 chunks); at most 600 fit (8 chunks of 75). Shorten it.\n');
  });
});

describe('every command', () => {
  it('answers --help with its usage and flags, and refuses what it does not take with status 2', { timeout: 120_000 }, async () => {
    const commands = [
      'src/main.ts',
      'src/bot-main.ts',
      'src/worker-main.ts',
      'src/cli/deploy-commands.ts',
      'src/cli/model-pull.ts',
      'src/cli/model-import.ts',
      'src/cli/model-list.ts',
      'src/cli/embeddings-list.ts',
      'src/cli/tokens.ts',
      'src/cli/healthcheck.ts',
      'src/tiny-model/cli.ts',
      'src/tiny-model/bench-cli.ts',
      'src/bench/cli.ts',
      'src/bench/queue-cli.ts',
      'src/bench/session-sweep.ts',
    ];
    const node = (script: string, arg: string) => run(process.execPath, [entryPoint(script), arg], { cwd: projectRoot, env: { PATH: process.env.PATH } });
    const helps = await Promise.all(commands.map((script) => node(script, '--help')));
    for (const { stdout } of helps) expect(stdout).toMatch(/^Usage: .+\n\n.+[\s\S]*\nOptions:\n[\s\S]*-h, --help +Show this help and exit\.\n/);
    const refusals = await Promise.all(['src/main.ts', 'src/cli/model-list.ts'].map((script) => node(script, '--no-such-flag').catch((error) => error)));
    for (const refusal of refusals) {
      expect(refusal.code).toBe(2);
      expect(refusal.stderr).toMatch(/^[^\n]*Unknown option '--no-such-flag'[^\n]*\(see --help\)\n$/);
    }
  });
});

describe('the imagine command line, read before any model loads', () => {
  const read = async (...args: string[]) => readImagineArguments(parseCommandLine([...args, '--model', modelDir], IMAGINE_SPEC));

  it('settles a complete request: the model fills in what is not given, a random seed included', async () => {
    const args = await read('a fox', '--guidance', '-0');
    expect(args).toMatchObject({ request: { prompt: 'a fox', negativePrompt: '', steps: 20, guidanceScale: -0, width: 256, height: 256 }, format: 'png' });
    if (!('request' in args)) throw new Error('expected a request');
    expect(args.request.seed).toMatch(/^\d+$/);
  });

  it('takes the size rule from the model: the two-resolution tiny U-Net draws 96x64, not 100x64', async () => {
    expect(await read('wide', '--size', '96x64')).toMatchObject({ request: { width: 96, height: 64 } });
    await expect(read('wide', '--size', '100x64')).rejects.toThrow('100x64 is not a size tiny can draw: its U-Net takes multiples of 16 pixels (try 96x64).');
  });

  it.each([
    [['--steps', '3'], 'a prompt is required'],
    [['   '], 'The prompt is empty'],
    [['a cat', '--steps', 'many'], '--steps must be a number (got "many")'],
    [['a cat', '--steps', '2.5'], 'steps must be a whole number of at least 1.'],
    [['a cat', '--guidance', '-1'], 'guidance must be a number of at least 0.'],
    [['a cat', '--size', 'big'], '--size must look like 512x512 (got "big")'],
    [['a cat', '--seed', '-4'], 'seed must be a whole number from 0 to 18446744073709551615.'],
    [['a cat', '--seed', '1.5'], 'seed must be a whole number from 0 to 18446744073709551615.'],
    [['a cat', '--scheduler', 'Eulerish'], /^Unknown scheduler "Eulerish"; choose one of Euler, Euler a,/],
    [['a cat', '--out', 'cat.gif'], '--out must end in .png, .jpg or .jpeg (got "cat.gif")'],
    [['a cat', '--out', '/nonexistent-folder/cat.png'], '--out: cannot write into /nonexistent-folder'],
  ])('refuses %j', async (args, message) => {
    const failure = await read(...(args as string[])).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(UsageError);
    if (typeof message === 'string') expect((failure as Error).message).toContain(message);
    else expect((failure as Error).message).toMatch(message);
  });

  it('reads --image and --strength into the job: the file, its size, the strength (0.75 unless given), its name', async () => {
    const picture = join(root, 'start.png');
    await sharp({ create: { width: 100, height: 60, channels: 3, background: '#336699' } }).png().toFile(picture);
    const args = await read('a lake', '--image', picture, '--strength', '0.4', '--steps', '10');
    expect(args.request).toMatchObject({ width: 96, height: 64, initImage: { image: readFileSync(picture).toString('base64'), strength: 0.4 } });
    expect((await read('a lake', '--image', picture, '--size', '64x64')).request).toMatchObject({ width: 64, height: 64, initImage: { strength: 0.75 } });
    const noise = await read('a lake');
    expect(noise.request.initImage).toBeUndefined();
  });

  it.each([
    [['a cat', '--strength', '0.5'], '--strength needs --image (the picture to start from)'],
    [['a cat', '--image', '/nonexistent/cat.png'], '--image: cannot read /nonexistent/cat.png (ENOENT)'],
    [['a cat', '--image', 'package.json'], '--image package.json: that file is not a picture (PNG, JPEG or WebP)'],
    [['a cat', '--image', 'IMAGE', '--strength', '1.5'], '--strength must be more than 0 and at most 1 (got 1.5)'],
    [['a cat', '--image', 'IMAGE', '--strength', '0'], '--strength must be more than 0 and at most 1 (got 0)'],
    [['a cat', '--image', 'IMAGE', '--strength', '0.1', '--steps', '5'], 'strength 0.1 of 5 steps leaves no step to run: use at least 10 steps or a higher strength.'],
  ])('refuses img2img arguments %j', async (args, message) => {
    const picture = join(root, 'refusals.png');
    await sharp({ create: { width: 32, height: 32, channels: 3, background: '#000' } }).png().toFile(picture);
    const failure = await read(...(args as string[]).map((arg) => (arg === 'IMAGE' ? picture : arg))).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(UsageError);
    expect((failure as Error).message).toBe(message);
  });

  it('refuses a model that does not exist as a bad argument', async () => {
    await expect(readImagineArguments(parseCommandLine(['a cat', '--model', join(root, 'missing')], IMAGINE_SPEC))).rejects.toBeInstanceOf(UsageError);
  });
});
