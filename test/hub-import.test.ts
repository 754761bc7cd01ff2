import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clipTokenizerFromHub, CLIP_TOKENIZER_REPO } from '../src/import/clip-tokenizer.ts';
import { importModel } from '../src/import/import-model.ts';
import type { HubSettings } from '../src/models/hub-client.ts';
import { scanModels } from '../src/models/installed.ts';
import { pullModel } from '../src/models/pull.ts';
import { StableDiffusionPipeline } from '../src/pipeline/pipeline.ts';
import { fixturePath, fixturesPresent, readFixtureJson } from './fixtures.ts';
import { startMockHub, type MockHub } from './mock-hub/server.ts';
import { tinyRepoFiles } from './mock-hub/tiny-repo.ts';

const runFile = promisify(execFile);
const projectRoot = resolve(fileURLToPath(import.meta.url), '..', '..');
const PYTORCH_REPO = 'acme/tiny-sd15';
const TAESD_REPO = 'acme/tiny-taesd';
/** What a diffusers repository carries besides what the import needs: none of it may be downloaded. */
const UNWANTED = ['unet/diffusion_pytorch_model.bin', 'text_encoder/pytorch_model.bin', 'safety_checker/config.json', 'README.md', 'v1-5-pruned.safetensors'];

let hub: MockHub;
let root: string;

/** Every file of a fixture folder, by its path inside it. */
function folderFiles(dir: string, prefix = ''): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) files.set(prefix + relative(dir, join(entry.parentPath, entry.name)).split('\\').join('/'), readFileSync(join(entry.parentPath, entry.name)));
  }
  return files;
}

const settings = (): HubSettings => ({ endpoint: hub.url, retryDelayMs: 10 });

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'hub-import-'));
  if (!fixturesPresent) return;
  const pytorch = folderFiles(fixturePath('models', 'tiny-sd15'));
  for (const path of UNWANTED) pytorch.set(path, Buffer.from(`not needed: ${path}`));
  hub = await startMockHub({
    [PYTORCH_REPO]: { files: pytorch },
    'acme/pickles-only': { files: new Map([...pytorch].map(([path, content]) => [path.replace(/\.safetensors$/, '.bin'), content])) },
    [TAESD_REPO]: { files: folderFiles(fixturePath('e2e2', 'models', 'tiny-taesd-pub')) },
    [CLIP_TOKENIZER_REPO]: { files: new Map(['vocab.json', 'merges.txt'].map((name) => [name, readFileSync(fixturePath('tokenizer', name))])) },
    'acme/tiny-onnx': { files: await tinyRepoFiles() },
  });
});
afterAll(async () => {
  await hub?.close();
  await rm(root, { recursive: true, force: true });
});

describe.runIf(fixturesPresent)('PyTorch repositories on the hub', () => {
  it('model:pull of a repository without an ONNX export downloads its safetensors, verified, and imports them', async () => {
    const modelsDir = join(root, 'pulled');
    mkdirSync(modelsDir);
    const result = await pullModel(
      { repo: PYTORCH_REPO, name: 'tiny-sd15', modelsDir },
      { hub: settings(), importPytorch: (folder, origin) => importModel({ source: folder, name: 'tiny-sd15', modelsDir, origin }) },
    );
    expect(result).toMatchObject({ imported: true, dir: join(modelsDir, 'tiny-sd15'), repo: PYTORCH_REPO });
    expect(readdirSync(modelsDir)).toEqual(['tiny-sd15']);
    const downloaded = hub.log.filter((entry) => entry.method === 'GET' && entry.url.includes('/resolve/')).map((entry) => decodeURIComponent(entry.url));
    for (const path of UNWANTED) expect(downloaded.some((url) => url.endsWith(`/${path}`))).toBe(false);

    const [model] = (await scanModels(modelsDir)).models;
    expect(model.imported).toMatchObject({ source: PYTORCH_REPO, description: `${PYTORCH_REPO} (PyTorch weights)` });
    const [entry] = readFixtureJson('models', 'index.json').models['tiny-sd15'].pipeline;
    const pipeline = await StableDiffusionPipeline.fromPretrained(result.dir);
    try {
      const { image } = await pipeline.generate({ prompt: entry.prompt, seed: entry.seed, steps: entry.steps, guidanceScale: entry.guidance, width: entry.width, height: entry.height });
      const reference = readFileSync(fixturePath(entry.image_u8));
      expect(Math.max(...image.pixels.map((value, i) => Math.abs(value - reference[i])))).toBeLessThanOrEqual(2);
    } finally {
      await pipeline.release();
    }
  });

  it('refuses a repository whose weights are pickles, saying why', async () => {
    const modelsDir = join(root, 'pickles');
    mkdirSync(modelsDir);
    const failure = await pullModel({ repo: 'acme/pickles-only', name: 'x', modelsDir }, { hub: settings(), importPytorch: () => Promise.reject(new Error('not reached')) }).catch((error: Error) => error);
    expect((failure as Error).message).toMatch(/acme\/pickles-only has only pickled PyTorch weights for text_encoder \(\.bin\), which are not loaded: a pickle can run any code/);
    expect(readdirSync(modelsDir)).toEqual([]);
  });

  it('a single file whose --config has no tokenizer takes CLIP’s from the hub, once', async () => {
    const modelsDir = join(root, 'single');
    mkdirSync(modelsDir);
    const config = join(root, 'config-without-tokenizer');
    mkdirSync(config);
    for (const component of ['text_encoder', 'unet', 'vae', 'scheduler']) symlinkSync(fixturePath('models', 'tiny-sd15', component), join(config, component));
    const tokenizerFor = () => clipTokenizerFromHub(modelsDir, { hub: settings() });
    const result = await importModel({ source: fixturePath('models', 'tiny-sd15.safetensors'), configDir: config, name: 'single', modelsDir }, { tokenizerFor });
    expect(readFileSync(join(result.dir, 'tokenizer', 'vocab.json'))).toEqual(readFileSync(fixturePath('tokenizer', 'vocab.json')));
    const fetches = () => hub.log.filter((entry) => entry.url.includes(`/${CLIP_TOKENIZER_REPO}/resolve/`)).length;
    const before = fetches();
    await clipTokenizerFromHub(modelsDir, { hub: settings() });
    expect(fetches()).toBe(before);
  });

  it('npm run model:import -- owner/name: a VAE repository becomes a VAE; an ONNX export is left to model:pull', async () => {
    const modelsDir = join(root, 'cli');
    const cli = (args: string[]) =>
      runFile(process.execPath, ['--import', 'tsx', 'src/cli/model-import.ts', ...args], {
        cwd: projectRoot,
        env: { ...process.env, MODELS_DIR: modelsDir, HF_ENDPOINT: hub.url, HF_TOKEN: '' },
      }).then(
        ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
        (error: { code: number; stdout: string; stderr: string }) => error,
      );
    const imported = await cli([TAESD_REPO]);
    expect(imported.code).toBe(0);
    expect(imported.stdout).toContain(`Imported tiny-taesd (${TAESD_REPO} (PyTorch VAE))`);
    expect((await scanModels(modelsDir)).vaes.map((vae) => vae.name)).toEqual(['tiny-taesd']);
    expect(existsSync(join(modelsDir, '.tiny-taesd.partial'))).toBe(false);

    const onnx = await cli(['acme/tiny-onnx', '--lora', 'detail.safetensors']);
    expect(onnx.code).toBe(1);
    expect(onnx.stderr).toMatch(/acme\/tiny-onnx is an ONNX export, not PyTorch weights: npm run model:pull installs it as it is/);
  });
});
