import { execFile } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, posix, relative, resolve, win32 } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { readPngParameters } from '../src/image/png.ts';
import { encodeModel } from '../src/graphs/onnx-graph.ts';
import { buildRrdbNet } from '../src/graphs/rrdbnet.ts';
import { RandomWeights } from '../src/graphs/weights.ts';
import { autoPull } from '../src/models/first-run.ts';
import { findPreset } from '../src/models/presets.ts';
import { resolveUpscaler } from '../src/models/upscalers.ts';
import { OnnxUpscaler } from '../src/upscale/upscaler.ts';
import type { HubSettings } from '../src/models/hub-client.ts';
import { listInstalledModels } from '../src/models/installed.ts';
import { PULL_MANIFEST_FILE } from '../src/pipeline/model-config.ts';
import { pullModel, type PullEvent } from '../src/models/pull.ts';
import { placeInside, selectModelFiles } from '../src/models/select-files.ts';
import { sha256, startMockHub, type MockHub } from './mock-hub/server.ts';
import { tinyRepoFiles, wantedPaths } from './mock-hub/tiny-repo.ts';
import { entryPoint } from './entry-point.ts';

const run = promisify(execFile);
const projectRoot = resolve(fileURLToPath(import.meta.url), '..', '..');
const TOKEN = 'hf_mocktoken';
const REPO = 'acme/tiny-sd-onnx';
const PRIVATE_REPO = 'acme/private-sd-onnx';
const HOSTILE_REPO = 'acme/hostile-sd-onnx';
/** Listing names a hostile repository adds to a working model: paths that leave the folder on Windows, a terminal escape. */
const HOSTILE_NAMES = ['unet/a\\..\\..\\..\\..\\x.bat', 'unet/..\\..\\escape.onnx_data', 'text_encoder/\u001b]0;owned\u0007\u001b[2Jtitle.json', 'vae_decoder/C:evil.pb'];

const upscalerPreset = findPreset('real-esrgan-x4')!;
let hub: MockHub;
let files: Map<string, Buffer>;
let root: string;
let modelsDir: string;

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((entry) => entry.isFile()).map((entry) => relative(dir, join(entry.parentPath, entry.name)).split('\\').join('/')).sort();
}

function settings(extra: Partial<HubSettings> = {}): HubSettings {
  return { endpoint: hub.url, retryDelayMs: 10, ...extra };
}

async function pullError(promise: Promise<unknown>): Promise<Error> {
  return promise.then(
    () => {
      throw new Error('the pull succeeded');
    },
    (error: Error) => error,
  );
}

function cli(script: string, args: string[], env: Record<string, string>) {
  return run(process.execPath, [entryPoint(script), ...args], {
    cwd: projectRoot,
    env: { ...process.env, MODELS_DIR: modelsDir, SD_MODEL_DIR: '', HF_TOKEN: '', ...env },
  });
}

beforeAll(async () => {
  files = await tinyRepoFiles();
  hub = await startMockHub(
    {
      [REPO]: { files },
      [PRIVATE_REPO]: { files, token: TOKEN },
      'acme/pytorch-only': { files: new Map([['model_index.json', Buffer.from('{}')], ['unet/diffusion_pytorch_model.safetensors', Buffer.alloc(64)]]) },
      'TensorStack/SD-Turbo-onnx': { files },
      'acme/sd-in-a-folder': { files: new Map([...files].map(([path, content]) => [`onnx/${path}`, content])), revisions: ['refs/pr/1'] },
      [HOSTILE_REPO]: { files: new Map([...files, ...HOSTILE_NAMES.map((name): [string, Buffer] => [name, Buffer.from('@echo owned\r\n')])]) },
      'acme/escape-codes': { files: new Map([['\u001b[2J\u001b[31mred/readme.txt', Buffer.from('x')]]) },
      [upscalerPreset.repo]: {
        files: new Map([
          [upscalerPreset.file!, Buffer.from(encodeModel(buildRrdbNet({ features: 4, growth: 2, blocks: 1 }, { precision: 'fp32', attention: 'unfused', weights: new RandomWeights(3) })))],
          ['Real-ESRGAN-x4plus.tflite', Buffer.alloc(100)],
          ['README.md', Buffer.from('# Real-ESRGAN')],
        ]),
        revisions: [upscalerPreset.revision],
      },
    },
    { pageSize: 7, renamed: { 'old-acme/tiny-sd-onnx': REPO } },
  );
  root = await mkdtemp(join(tmpdir(), 'imagine-pull-'));
});

afterAll(async () => {
  await hub.close();
  await rm(root, { recursive: true, force: true });
});

beforeEach(async () => {
  modelsDir = join(root, `models-${Math.random().toString(36).slice(2)}`);
  await mkdir(modelsDir);
  hub.log.length = 0;
  for (const key of Object.keys(hub.faults) as (keyof typeof hub.faults)[]) delete hub.faults[key];
});

describe('model:pull against a mock hub', () => {
  it('downloads only the ONNX model files of a private repository, verified, and the model then generates an image', async () => {
    const { stdout } = await cli('src/cli/model-pull.ts', [PRIVATE_REPO, '--name', 'tiny'], { HF_ENDPOINT: hub.url, HF_TOKEN: TOKEN });
    const dir = join(modelsDir, 'tiny');
    expect(stdout).toContain(`Installed tiny from ${PRIVATE_REPO}`);

    const expected = wantedPaths(files);
    expect(expected).toContain('unet/weights.pb');
    expect(await filesUnder(dir)).toEqual([PULL_MANIFEST_FILE, ...expected].sort());
    for (const path of expected) expect(readFileSync(join(dir, path)).equals(files.get(path)!), path).toBe(true);
    expect(await readdir(modelsDir)).toEqual(['tiny']);

    const manifest = JSON.parse(readFileSync(join(dir, PULL_MANIFEST_FILE), 'utf8'));
    expect(manifest).toMatchObject({ repo: PRIVATE_REPO, revision: 'main', commit: expect.stringMatching(/^[0-9a-f]{40}$/) });

    const treePages = hub.log.filter((entry) => entry.url.includes('/tree/'));
    expect(treePages.length).toBeGreaterThan(1);
    expect(hub.log.filter((entry) => entry.server === 'hub').every((entry) => entry.authorization === `Bearer ${TOKEN}`)).toBe(true);
    const cdnRequests = hub.log.filter((entry) => entry.server === 'cdn');
    expect(cdnRequests.length).toBeGreaterThan(0);
    expect(cdnRequests.every((entry) => entry.authorization === undefined)).toBe(true);

    const out = join(root, 'pulled.png');
    await cli('src/cli/imagine.ts', ['x', '--model', dir, '--steps', '2', '--size', '64x64', '--seed', '7', '--out', out], {});
    expect(readPngParameters(readFileSync(out))).toMatch(/^x\nSteps: 2, .*Seed: 7, Size: 64x64/);
  });

  it('resumes a file whose connection is cut, each time with a Range request from where it stopped', async () => {
    const size = files.get('unet/weights.pb')!.length;
    const cutAfter = Math.floor(size / 4);
    hub.faults.cut = { path: 'unet/weights.pb', afterBytes: cutAfter, times: 3 };
    const events: PullEvent[] = [];
    await pullModel({ repo: REPO, name: 'tiny', modelsDir }, { hub: settings(), onEvent: (event) => events.push(event) });

    const transfers = hub.log.filter((entry) => entry.server === 'cdn' && entry.url.includes(sha256(files.get('unet/weights.pb')!)));
    expect(transfers.map((entry) => entry.status)).toEqual([200, 206, 206, 206]);
    const starts = transfers.slice(1).map((entry) => Number(/^bytes=(\d+)-$/.exec(entry.range ?? '')?.[1]));
    expect(starts[0]).toBeGreaterThan(0);
    expect(starts[0]).toBeLessThanOrEqual(cutAfter);
    expect(starts[1]).toBeGreaterThan(starts[0]);
    expect(starts[2]).toBeGreaterThan(starts[1]);
    expect(events.filter((event) => event.type === 'retry' && event.path === 'unet/weights.pb')).toHaveLength(3);
    expect(readFileSync(join(modelsDir, 'tiny', 'unet', 'weights.pb')).equals(files.get('unet/weights.pb')!)).toBe(true);
  });

  it('continues an interrupted pull in a later run, keeping the bytes it had', async () => {
    const controller = new AbortController();
    let received = 0;
    const first = pullModel(
      { repo: REPO, name: 'tiny', modelsDir },
      {
        hub: settings(),
        signal: controller.signal,
        onEvent: (event) => {
          if (event.type === 'bytes' && event.path === 'unet/weights.pb' && (received += event.bytes) > 1000) controller.abort();
        },
      },
    );
    expect((await pullError(first)).name).toBe('AbortError');
    expect(existsSync(join(modelsDir, 'tiny'))).toBe(false);
    const kept = (await stat(join(modelsDir, '.tiny.partial', 'unet', 'weights.pb.incomplete'))).size;
    expect(kept).toBeGreaterThan(0);
    expect(await listInstalledModels(modelsDir)).toEqual([]);

    writeFileSync(join(modelsDir, '.tiny.partial', 'unet', 'left-over.bin'), 'from an older listing');
    hub.log.length = 0;
    const events: PullEvent[] = [];
    const result = await pullModel({ repo: REPO, name: 'tiny', modelsDir }, { hub: settings(), onEvent: (event) => events.push(event) });
    expect(await filesUnder(result.dir)).toEqual([PULL_MANIFEST_FILE, ...wantedPaths(files)].sort());
    expect(events).toContainEqual({ type: 'file-start', path: 'unet/weights.pb', size: files.get('unet/weights.pb')!.length, offset: kept });
    expect(events).toContainEqual({ type: 'file-done', path: 'model_index.json', size: files.get('model_index.json')!.length, reused: true });
    expect(hub.log.find((entry) => entry.server === 'cdn' && entry.range)?.range).toBe(`bytes=${kept}-`);
    expect(result.downloadedBytes).toBeLessThan(result.bytes);
    expect(readFileSync(join(result.dir, 'unet', 'weights.pb')).equals(files.get('unet/weights.pb')!)).toBe(true);
    expect(existsSync(join(modelsDir, '.tiny.partial'))).toBe(false);
  });

  it.each([
    ['an LFS file against its sha256', 'unet/weights.pb', /unet\/weights\.pb failed verification: its sha256 is/],
    ['a plain file against its git blob id', 'model_index.json', /model_index\.json failed verification: its git-sha1 is/],
  ])('rejects corrupted bytes of the right length (%s) and installs nothing', async (_, path, message) => {
    hub.faults.corrupt = path;
    const error = await pullError(pullModel({ repo: REPO, name: 'tiny', modelsDir }, { hub: settings() }));
    expect(error.message).toMatch(message);
    expect(existsSync(join(modelsDir, 'tiny'))).toBe(false);
    expect(await listInstalledModels(modelsDir)).toEqual([]);
    const staged = await filesUnder(join(modelsDir, '.tiny.partial'));
    expect(staged.filter((name) => name.startsWith(path))).toEqual([]);
  });

  it('explains a 401 without a token by pointing at HF_TOKEN', async () => {
    const failure = await cli('src/cli/model-pull.ts', [PRIVATE_REPO], { HF_ENDPOINT: hub.url }).catch((error) => error);
    expect(failure.code).toBe(1);
    expect(failure.stderr).toMatch(/acme\/private-sd-onnx was not found on http:\/\/127\.0\.0\.1:\d+, or it is private or gated .*set HF_TOKEN/);
    expect(await readdir(modelsDir)).toEqual([]);
  });

  it('says when HF_TOKEN is refused', async () => {
    const error = await pullError(pullModel({ repo: PRIVATE_REPO, name: 'tiny', modelsDir }, { hub: settings({ token: 'hf_wrong' }) }));
    expect(error.message).toMatch(/did not accept HF_TOKEN for acme\/private-sd-onnx \(401 Unauthorized\)/);
  });

  it.each([
    [{ repo: 'acme/nothing-here' }, {}, /acme\/nothing-here was not found on .* set HF_TOKEN/],
    [{ repo: 'acme/nothing-here' }, { token: TOKEN }, /Model repository acme\/nothing-here was not found on http:\/\/127\.0\.0\.1:\d+ \(404 Not Found\)/],
    [{ repo: REPO, revision: 'v9' }, {}, /acme\/tiny-sd-onnx has no revision "v9"/],
    [{ repo: REPO, subfolder: 'onnx' }, {}, /acme\/tiny-sd-onnx at revision "main" has no "onnx"/],
    [{ repo: 'acme/pytorch-only' }, {}, /acme\/pytorch-only is not a diffusers ONNX Stable Diffusion export: missing .*unet\/model\.onnx.*PyTorch weights/],
  ])('gives a clear error for %j', async (source, extra, message) => {
    const error = await pullError(pullModel({ ...source, name: 'x', modelsDir }, { hub: settings(extra) }));
    expect(error.message).toMatch(message);
    expect(existsSync(join(modelsDir, 'x'))).toBe(false);
  });

  it('waits out 429 and 503 answers as Retry-After says, and follows a renamed repository', async () => {
    hub.faults.transient = { status: 503, times: 2, retryAfter: '0' };
    const result = await pullModel({ repo: 'old-acme/tiny-sd-onnx', name: 'tiny', modelsDir }, { hub: settings() });
    expect(hub.log.filter((entry) => entry.status === 503)).toHaveLength(2);
    expect(hub.log.some((entry) => entry.status === 307)).toBe(true);
    expect(await filesUnder(result.dir)).toEqual([PULL_MANIFEST_FILE, ...wantedPaths(files)].sort());
  });

  it('pulls from a subfolder at a pull-request revision', async () => {
    const result = await pullModel({ repo: 'acme/sd-in-a-folder', revision: 'refs/pr/1', subfolder: 'onnx', name: 'folder', modelsDir }, { hub: settings() });
    expect(await filesUnder(result.dir)).toEqual([PULL_MANIFEST_FILE, ...wantedPaths(files)].sort());
    expect(hub.log.some((entry) => entry.url.includes('/tree/refs%2Fpr%2F1/onnx?'))).toBe(true);
  });

  it('refuses to overwrite an installed model unless forced', async () => {
    await pullModel({ repo: REPO, name: 'tiny', modelsDir }, { hub: settings() });
    const again = await pullError(pullModel({ repo: REPO, name: 'tiny', modelsDir }, { hub: settings() }));
    expect(again.message).toMatch(/already exists\. Pass --force/);
    const replaced = await pullModel({ repo: REPO, name: 'tiny', modelsDir, force: true }, { hub: settings() });
    expect(await filesUnder(replaced.dir)).toEqual([PULL_MANIFEST_FILE, ...wantedPaths(files)].sort());
    expect((await readdir(modelsDir)).sort()).toEqual(['tiny']);
  });

  it('AUTO_PULL pulls its preset once, and names the presets when it is not one', async () => {
    const dir = await autoPull({ preset: 'sd-turbo', modelsDir, hub: settings(), onEvent: () => {} });
    expect(dir).toBe(join(modelsDir, 'sd-turbo'));
    expect((await listInstalledModels(modelsDir)).map((model) => model.name)).toEqual(['sd-turbo']);
    hub.log.length = 0;
    expect(await autoPull({ preset: 'sd-turbo', modelsDir, hub: settings() })).toBe(dir);
    expect(hub.log).toEqual([]);
    expect(await autoPull({ preset: '', modelsDir })).toBeUndefined();
    await expect(autoPull({ preset: 'sd-9', modelsDir })).rejects.toThrow(/AUTO_PULL=sd-9 is not a preset; use one of sd-turbo, lcm-dreamshaper, sd-1\.5/);
  });

  it('pulls the upscaler preset as its one .onnx file, which the Upscale buttons then find and load (never as AUTO_PULL)', async () => {
    const { stdout } = await cli('src/cli/model-pull.ts', ['real-esrgan-x4'], { HF_ENDPOINT: hub.url });
    expect(stdout).toContain('Installed real-esrgan-x4 from qualcomm/Real-ESRGAN-x4plus');
    expect(stdout).toContain('The Upscale buttons use it');
    const dir = join(modelsDir, 'real-esrgan-x4');
    expect(await filesUnder(dir)).toEqual([PULL_MANIFEST_FILE, 'Real-ESRGAN-x4plus.onnx']);
    const found = await resolveUpscaler(undefined, modelsDir);
    expect(found).toMatchObject({ name: 'real-esrgan-x4', file: join(dir, 'Real-ESRGAN-x4plus.onnx') });
    const upscaler = await OnnxUpscaler.load(found!.file, found!.name, { executionProvider: 'cpu', clock: { runMs: 0 }, fuseAttention: false });
    expect(upscaler.scale).toBe(4);
    await upscaler.release();
    expect(await resolveUpscaler('lanczos', modelsDir)).toBeUndefined();
    await expect(resolveUpscaler('esrgan-9', modelsDir)).rejects.toThrow('UPSCALER=esrgan-9 is not an installed upscaler (real-esrgan-x4), an .onnx file, or "lanczos"');
    await expect(autoPull({ preset: 'real-esrgan-x4', modelsDir })).rejects.toThrow(/AUTO_PULL=real-esrgan-x4 is not a preset; use one of sd-turbo/);
  });

  it('model:pull --auto pulls the AUTO_PULL preset unless it is installed, and nothing without AUTO_PULL', async () => {
    const first = await cli('src/cli/model-pull.ts', ['--auto'], { HF_ENDPOINT: hub.url, AUTO_PULL: 'sd-turbo' });
    expect(first.stdout).toMatch(/sd-turbo is installed\.\n$/);
    expect((await listInstalledModels(modelsDir)).map((model) => model.name)).toEqual(['sd-turbo']);
    hub.log.length = 0;
    const again = await cli('src/cli/model-pull.ts', ['--auto'], { HF_ENDPOINT: hub.url, AUTO_PULL: 'sd-turbo' });
    expect(again.stdout).toMatch(/sd-turbo is installed\.\n$/);
    expect(hub.log).toEqual([]);
    const unset = await cli('src/cli/model-pull.ts', ['--auto'], { HF_ENDPOINT: hub.url, AUTO_PULL: '' });
    expect(unset.stdout).toBe('AUTO_PULL is not set: nothing to pull.\n');
    const both = await cli('src/cli/model-pull.ts', ['--auto', 'sd-1.5'], { AUTO_PULL: 'sd-turbo' }).catch((error: { code: number; stderr: string }) => error);
    expect(both).toMatchObject({ code: 2, stderr: expect.stringContaining('name no model with it') });
  });
});

describe('model:pull against a hostile hub', () => {
  it('leaves out names that are not plain file names, says so with their control characters escaped, and writes only inside the model', async () => {
    const { stdout, stderr } = await cli('src/cli/model-pull.ts', [HOSTILE_REPO, '--name', 'tiny'], { HF_ENDPOINT: hub.url });
    expect(stdout).toContain(`Installed tiny from ${HOSTILE_REPO}`);
    expect(await filesUnder(join(modelsDir, 'tiny'))).toEqual([PULL_MANIFEST_FILE, ...wantedPaths(files)].sort());
    expect(await filesUnder(modelsDir)).toEqual((await filesUnder(join(modelsDir, 'tiny'))).map((path) => `tiny/${path}`));
    expect(hub.log.some((entry) => /x\.bat|escape|title|evil/.test(decodeURIComponent(entry.url)) && !entry.url.includes('/tree/'))).toBe(false);

    expect(stderr).not.toMatch(/[\u0000-\u0009\u000b-\u001f]/);
    expect(stderr).toContain('left out "text_encoder/\\x1b]0;owned\\x07\\x1b[2Jtitle.json": not a plain file name');
    expect(stderr).toContain('left out "unet/a\\..\\..\\..\\..\\x.bat": not a plain file name');
  });

  it('escapes control characters in the hub names an error message quotes', async () => {
    const failure = await cli('src/cli/model-pull.ts', ['acme/escape-codes'], { HF_ENDPOINT: hub.url }).catch((error) => error);
    expect(failure.code).toBe(1);
    expect(failure.stderr).toContain('top level has: \\x1b[2J\\x1b[31mred.');
    expect(failure.stderr).not.toContain('\u001b');
  });

  it('selects only plain names of model file types', () => {
    const listed = (path: string) => ({ path, size: 1, oid: '0'.repeat(40) });
    const required = ['model_index.json', 'scheduler/scheduler_config.json', 'tokenizer/vocab.json', 'tokenizer/merges.txt', 'text_encoder/model.onnx', 'unet/model.onnx', 'vae_decoder/model.onnx'];
    const extra = ['unet/weights.pb', 'unet/onnx__MatMul_1234', 'unet/conv_in.weight', 'text_encoder/model.onnx.data', 'vae_decoder/config.json'];
    const refused = ['unet/run.bat', 'unet/x.exe', 'unet/install.sh', 'unet/model_fp16.onnx_data', 'unet/nul.json', 'unet/model.onnx.', 'tokenizer/model.onnx', 'unet/ spaced.json'];
    const selection = selectModelFiles([...required, ...extra, ...refused, ...HOSTILE_NAMES].map(listed), '', 'test');
    expect(selection.files.map((file) => file.target).sort()).toEqual([...required, ...extra].sort());
    expect(selection.unsafe.sort()).toEqual([...HOSTILE_NAMES, 'unet/nul.json', 'unet/model.onnx.', 'unet/ spaced.json'].sort());
  });

  it.each([
    ['Windows', win32, 'C:\\models\\.tiny.partial'],
    ['POSIX', posix, '/srv/models/.tiny.partial'],
  ])('keeps every written path inside the staging folder under %s path rules', (_, paths, staging) => {
    expect(placeInside(staging, 'unet/weights.pb', paths)).toBe(paths.join(staging, 'unet', 'weights.pb'));
    for (const hostile of [...HOSTILE_NAMES, 'unet/../../x.onnx', '../x.json', 'unet/C:\\x.pb', '/etc/passwd', 'unet\\..\\..\\x.pb', 'unet/aux.json', '']) {
      expect(() => placeInside(staging, hostile, paths), hostile).toThrow(/not a plain file name inside the model directory/);
    }
  });
});

