import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { EmbeddingLibrary, scanEmbeddings } from '../src/models/embeddings.ts';
import { readFloatTensors } from '../src/models/safetensors.ts';
import { safetensorsBytes } from './safetensors-file.ts';
import { entryPoint } from './entry-point.ts';

const dirs: string[] = [];
async function folder(files: Record<string, Uint8Array | string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'embeddings-'));
  dirs.push(dir);
  for (const [name, contents] of Object.entries(files)) {
    await mkdir(join(dir, name, '..'), { recursive: true });
    await writeFile(join(dir, name), contents);
  }
  return dir;
}
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

const ramp = (count: number) => Array.from({ length: count }, (_, i) => i / 8);
const single = (key: string, count: number, width: number, dtype: 'F32' | 'F16' = 'F32') =>
  safetensorsBytes({ [key]: { dtype, shape: [count, width], values: ramp(count * width) } });

describe('readFloatTensors', () => {
  it('reads F32 and F16 tensors back', async () => {
    const dir = await folder({
      'pair.safetensors': safetensorsBytes({ a: { dtype: 'F32', shape: [2, 2], values: [1, 2, 3, 4.5] }, b: { dtype: 'F16', shape: [3], values: [0.5, -2, 1024] } }),
    });
    const tensors = readFloatTensors(join(dir, 'pair.safetensors'));
    expect(tensors.get('a')).toEqual({ dtype: 'F32', shape: [2, 2], data: Float32Array.from([1, 2, 3, 4.5]) });
    expect(tensors.get('b')).toEqual({ dtype: 'F16', shape: [3], data: Float32Array.from([0.5, -2, 1024]) });
  });

  it('refuses truncated and non-safetensors files with the reason', async () => {
    const bytes = single('emb_params', 2, 4);
    const dir = await folder({ 'short.safetensors': bytes.subarray(0, bytes.length - 1), 'text.safetensors': 'not tensors at all', 'zip.safetensors': 'PK\x03\x04 a zip file' });
    expect(() => readFloatTensors(join(dir, 'short.safetensors'))).toThrow(/short\.safetensors is truncated/);
    expect(() => readFloatTensors(join(dir, 'text.safetensors'))).toThrow(/text\.safetensors is not a \.safetensors file/);
    expect(() => readFloatTensors(join(dir, 'zip.safetensors'))).toThrow(/zip\.safetensors is a PyTorch pickle file/);
  });
});

describe('scanEmbeddings', () => {
  it('reads SD 1.x, SD 2.x and SDXL embeddings, in subfolders too, named by file', async () => {
    const sdxl = safetensorsBytes({
      clip_g: { dtype: 'F16', shape: [2, 1280], values: ramp(2560) },
      clip_l: { dtype: 'F16', shape: [2, 768], values: ramp(1536) },
    });
    const dir = await folder({
      'EasyNegative.safetensors': single('emb_params', 8, 768),
      'sd2/style.safetensors': single('string_to_param.*', 3, 1024, 'F16'),
      'xl-hands.safetensors': sdxl,
      'one.safetensors': safetensorsBytes({ '<one>': { dtype: 'F32', shape: [768], values: ramp(768) } }),
    });
    const { embeddings, skipped } = await scanEmbeddings(dir);
    expect(skipped).toEqual([]);
    expect(embeddings.map(({ name, file, vectorCount, family }) => ({ name, file, vectorCount, family }))).toEqual([
      { name: 'EasyNegative', file: 'EasyNegative.safetensors', vectorCount: 8, family: 'SD 1.x' },
      { name: 'one', file: 'one.safetensors', vectorCount: 1, family: 'SD 1.x' },
      { name: 'style', file: 'sd2/style.safetensors', vectorCount: 3, family: 'SD 2.x' },
      { name: 'xl-hands', file: 'xl-hands.safetensors', vectorCount: 2, family: 'SDXL' },
    ]);
    const xl = embeddings.find((embedding) => embedding.name === 'xl-hands')!;
    expect([...xl.vectors.keys()].sort()).toEqual([1280, 768]);
    expect(xl.vectors.get(768)!.slice(0, 3)).toEqual(Float32Array.from([0, 0.125, 0.25]));
  });

  it('lists what it cannot use, with the reason, and a missing folder as empty', async () => {
    const dir = await folder({
      'pickle.pt': 'not loaded',
      'two.safetensors': safetensorsBytes({ a: { dtype: 'F32', shape: [1, 4], values: ramp(4) }, b: { dtype: 'F32', shape: [1, 4], values: ramp(4) } }),
      'broken.safetensors': 'garbage',
      'huge.safetensors': single('emb_params', 76, 8),
      'sub/EasyNegative.safetensors': single('emb_params', 1, 768),
      'easynegative.safetensors': single('emb_params', 1, 768),
    });
    const { embeddings, skipped } = await scanEmbeddings(dir);
    expect(embeddings.map((embedding) => embedding.file)).toEqual(['easynegative.safetensors']);
    expect(Object.fromEntries(skipped.map(({ file, reason }) => [file, reason]))).toEqual({
      'broken.safetensors': expect.stringMatching(/not a \.safetensors file/),
      'huge.safetensors': 'has 76 vectors; an embedding has 1 to 75',
      'pickle.pt': expect.stringMatching(/convert them to \.safetensors/),
      'sub/EasyNegative.safetensors': 'its name "EasyNegative" is taken by easynegative.safetensors',
      'two.safetensors': expect.stringMatching(/holds 2 tensors \(a, b\)/),
    });
    expect(await scanEmbeddings(join(dir, 'missing'))).toEqual({ embeddings: [], skipped: [] });
  });
});

describe('EmbeddingLibrary', () => {
  it('reads the folder again when a file is added, and only then', async () => {
    const dir = await folder({ 'a.safetensors': single('emb_params', 1, 4) });
    const library = new EmbeddingLibrary(dir);
    const first = await library.current();
    expect(first.map((embedding) => embedding.name)).toEqual(['a']);
    expect(await library.current()).toBe(first);
    await writeFile(join(dir, 'b.safetensors'), single('emb_params', 1, 4));
    // Some file systems keep the folder's time to the second: move it on explicitly.
    const later = new Date(Date.now() + 5000);
    await utimes(dir, later, later);
    expect((await library.current()).map((embedding) => embedding.name)).toEqual(['a', 'b']);
  });
});

describe('embeddings:list', () => {
  it('prints one row per embedding and the files it skipped', async () => {
    const dir = await folder({ 'EasyNegative.safetensors': single('emb_params', 8, 768), 'old.pt': 'pickle' });
    const { stdout } = await promisify(execFile)(process.execPath, [entryPoint('src/cli/embeddings-list.ts')], {
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      env: { ...process.env, EMBEDDINGS_DIR: dir },
    });
    expect(stdout.split('\n')).toEqual([
      'name          family  vectors  file',
      'EasyNegative  SD 1.x  8        EasyNegative.safetensors',
      'skipped old.pt: not a .safetensors file (pickled .pt/.bin files can run code when loaded; convert them to .safetensors)',
      '',
    ]);
  });
});
