import { execFile } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { readPngParameters } from '../src/image/png.ts';
import { autoPull } from '../src/models/first-run.ts';
import type { HubSettings } from '../src/models/hub-client.ts';
import { listInstalledModels } from '../src/models/installed.ts';
import { PULL_MANIFEST_FILE } from '../src/pipeline/model-config.ts';
import { pullModel, type PullEvent } from '../src/models/pull.ts';
import { sha256, startMockHub, type MockHub } from './mock-hub/server.ts';
import { tinyRepoFiles, wantedPaths } from './mock-hub/tiny-repo.ts';

const run = promisify(execFile);
const projectRoot = resolve(fileURLToPath(import.meta.url), '..', '..');
const TOKEN = 'hf_mocktoken';
const REPO = 'acme/tiny-sd-onnx';
const PRIVATE_REPO = 'acme/private-sd-onnx';

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
  return run(process.execPath, ['--import', 'tsx', script, ...args], {
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
    await expect(autoPull({ preset: 'sd-9', modelsDir })).rejects.toThrow(/AUTO_PULL=sd-9 is not a preset; use one of sd-turbo, sd-1\.5/);
  });
});
