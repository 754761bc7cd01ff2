import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseParameters } from '../src/image/parameters.ts';
import { readPngParameters } from '../src/image/png.ts';
import { writeTinyModel } from '../src/tiny-model/index.ts';

const run = promisify(execFile);
const projectRoot = resolve(fileURLToPath(import.meta.url), '..', '..');
const root = mkdtempSync(join(tmpdir(), 'imagine-cli-'));
const modelDir = join(root, 'tiny');

function imagine(args: string[]) {
  return run(process.execPath, ['--import', 'tsx', 'src/cli/imagine.ts', ...args], {
    cwd: projectRoot,
    env: { ...process.env, SD_MODEL_DIR: '' },
  });
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

  it.each([
    [['--steps', '3'], /prompt is required/],
    [['a cat', '--steps', 'many'], /--steps must be a whole number/],
    [['a cat', '--size', 'big'], /--size must look like 512x512/],
    [['a cat', '--seed', '-4'], /--seed/],
    [['a cat', '--seed', '1.5'], /--seed must be a whole number/],
    [['a cat', '--bogus'], /Unknown option '--bogus'/],
  ])('rejects %j with one line on stderr and a non-zero exit', async (args, message) => {
    const failure = await imagine([...args, '--model', modelDir]).then(
      () => undefined,
      (error: { code: number; stderr: string }) => error,
    );
    expect(failure?.code).toBe(2);
    expect(failure?.stderr.trim().split('\n')).toHaveLength(1);
    expect(failure?.stderr).toMatch(message);
  });

  it('explains a size the model cannot take', async () => {
    const failure = await imagine(['a cat', '--size', '100x64', '--model', modelDir]).catch((error) => error);
    expect(failure.code).toBe(1);
    expect(failure.stderr).toMatch(/width 100 is not a multiple of 16/);
  });
});
