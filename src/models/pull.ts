import { existsSync } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat, statfs, writeFile } from 'node:fs/promises';
import path, { dirname, isAbsolute, join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { PULL_MANIFEST_FILE } from '../pipeline/model-config.ts';
import { HubClient, HubError, checkRepoId, hubSettingsFromEnv, type HubSettings } from './hub-client.ts';
import { checkModelName, defaultModelsDir, filesBelow, type PullManifest } from './installed.ts';
import { isOnnxExport, isPytorchRepository, placeInside, selectModelFiles, selectOneFile, selectPytorchFiles, type PlannedFile } from './select-files.ts';
import { checksumFor, fileMatches, hashFilePrefix, startHash } from './verify.ts';

export interface PullRequest {
  repo: string;
  /** Branch, tag or commit; default "main". */
  revision?: string;
  /** Folder of the repository that holds model_index.json, when not the top level. */
  subfolder?: string;
  /** Download only this file of the repository (an upscaler), instead of a diffusers ONNX export's files. */
  file?: string;
  /** Directory name under the models directory. */
  name: string;
  modelsDir?: string;
  /** Replace an installed model of the same name. */
  force?: boolean;
}

export interface PullOptions {
  hub?: HubSettings;
  onEvent?: (event: PullEvent) => void;
  signal?: AbortSignal;
  /** Give a transfer up as failed when no byte arrives for this long. */
  stallTimeoutMs?: number;
  /**
   * Builds the model from a repository that holds PyTorch weights (the diffusers layout) rather than an ONNX
   * export, once they are downloaded into `folder` (model:import does); without it such a repository is refused.
   */
  importPytorch?: (folder: string, origin: PullOrigin) => Promise<{ dir: string }>;
  /** Refuse an ONNX export (model:import of a repository: its options need PyTorch weights). */
  requirePytorch?: boolean;
}

/** The repository, revision and commit a model was pulled from. */
export interface PullOrigin {
  repo: string;
  revision: string;
  subfolder?: string;
  commit?: string;
}

export type PullEvent =
  | { type: 'plan'; repo: string; revision: string; files: { path: string; size: number; present: number }[]; unsafe: string[] }
  | { type: 'file-start'; path: string; size: number; offset: number }
  | { type: 'bytes'; path: string; bytes: number }
  | { type: 'file-done'; path: string; size: number; reused: boolean }
  | { type: 'retry'; path: string; reason: string; delayMs: number };

export interface PullResult {
  name: string;
  dir: string;
  repo: string;
  revision: string;
  commit: string | undefined;
  files: number;
  bytes: number;
  downloadedBytes: number;
  /** The repository held PyTorch weights, and the model was built from them. */
  imported: boolean;
}

const SOURCE_FILE = '.pull-source.json';
const INCOMPLETE = '.incomplete';
const DEFAULT_STALL_TIMEOUT_MS = 60_000;
/** Consecutive transfer failures without a byte of progress before a file is given up. */
const MAX_IDLE_FAILURES = 5;

/** The models/<name> directory for a repository pulled without --name: its name, lower-cased. */
export function defaultModelName(repo: string): string {
  return repo.split('/').pop()!.toLowerCase();
}

/**
 * Downloads the diffusers ONNX files of `request.repo` into `<modelsDir>/<name>`, verifying each file's size and
 * checksum against the hub's listing. Files land in `<modelsDir>/.<name>.partial` first (kept between runs, so an
 * interrupted pull resumes) and the directory is renamed into place only when every file is verified.
 */
export async function pullModel(request: PullRequest, options: PullOptions = {}): Promise<PullResult> {
  const revision = request.revision || 'main';
  const subfolder = (request.subfolder ?? '').replace(/^\/+|\/+$/g, '');
  const { repo, name } = request;
  checkRepoId(repo);
  checkModelName(name);
  const modelsDir = request.modelsDir ?? defaultModelsDir();
  const target = join(modelsDir, name);
  if (existsSync(target) && !request.force) {
    throw new Error(`${target} already exists. Pass --force to replace it, or --name to pull under another name.`);
  }

  const client = new HubClient(options.hub ?? hubSettingsFromEnv());
  const source = `${repo}${revision === 'main' ? '' : ` (revision ${revision})`}${subfolder ? `, subfolder ${subfolder}` : ''}`;
  const listing = await client.listFiles(repo, revision, subfolder);
  const onnx = isOnnxExport(listing, subfolder);
  if (onnx && options.requirePytorch) {
    throw new Error(`${source} is an ONNX export, not PyTorch weights: npm run model:pull installs it as it is (LoRAs, another VAE and the other import options need PyTorch weights)`);
  }
  const pytorch = request.file === undefined && options.importPytorch !== undefined && !onnx && (options.requirePytorch || isPytorchRepository(listing, subfolder));
  const { files: planned, unsafe } = request.file
    ? selectOneFile(listing, subfolder, request.file, source)
    : (pytorch ? selectPytorchFiles : selectModelFiles)(listing, subfolder, source);

  const staging = join(modelsDir, `.${name}.partial`);
  const transfer = await download(client, { repo, revision, subfolder, file: request.file, planned, unsafe }, staging, options);
  const bytes = planned.reduce((sum, file) => sum + file.size, 0);
  const result = { name, repo, revision, commit: transfer.commit, files: planned.length, bytes, downloadedBytes: transfer.downloadedBytes };
  if (pytorch) {
    const { dir } = await options.importPytorch!(staging, { repo, revision, ...(subfolder ? { subfolder } : {}), commit: transfer.commit });
    // The PyTorch weights served their purpose; kept only when the import fails, for another try without a download.
    await rm(staging, { recursive: true, force: true });
    return { ...result, dir, imported: true };
  }

  const manifest: PullManifest = {
    repo,
    revision,
    ...(subfolder ? { subfolder } : {}),
    commit: transfer.commit,
    endpoint: client.endpoint,
    pulledAt: new Date().toISOString(),
    files: planned.map((file) => ({ path: file.target, size: file.size, ...checksumField(file) })),
  };
  await writeFile(join(staging, PULL_MANIFEST_FILE), JSON.stringify(manifest, null, 2) + '\n');
  await placeModel(staging, target);
  await rm(join(target, SOURCE_FILE), { force: true });
  return { ...result, dir: target, imported: false };
}

/**
 * Files of `repo` at the top level, by name (e.g. a tokenizer's vocab.json and merges.txt), downloaded and verified
 * into `dir`, which appears only once all of them are there.
 */
export async function pullRepoFiles(request: { repo: string; revision?: string; names: string[]; dir: string }, options: PullOptions = {}): Promise<void> {
  const revision = request.revision || 'main';
  const client = new HubClient(options.hub ?? hubSettingsFromEnv());
  const listing = await client.listFiles(request.repo, revision, '');
  const planned = request.names.map((name) => {
    const file = listing.find((entry) => entry.path === name);
    if (!file) throw new Error(`${request.repo} has no ${name}`);
    return { ...file, target: name };
  });
  const staging = `${request.dir}.partial`;
  await download(client, { repo: request.repo, revision, subfolder: '', planned, unsafe: [] }, staging, options);
  await rm(join(staging, SOURCE_FILE), { force: true });
  await rm(request.dir, { recursive: true, force: true });
  await rename(staging, request.dir);
}

interface DownloadPlan {
  repo: string;
  revision: string;
  subfolder: string;
  /** The one file of the repository pulled (an upscaler), when not a whole model. */
  file?: string;
  planned: PlannedFile[];
  unsafe: string[];
}

/** Downloads the planned files into `staging`, resuming what an earlier try of the same pull left there. */
async function download(client: HubClient, plan: DownloadPlan, staging: string, options: PullOptions): Promise<Transfer> {
  const { repo, revision, subfolder, planned, unsafe } = plan;
  const destinations = planned.map((file) => placeInside(staging, file.target, path));
  await prepareStaging(staging, { repo, revision, subfolder, ...(plan.file ? { file: plan.file } : {}) }, planned);
  const present = await Promise.all(planned.map((file) => presentBytes(staging, file)));
  await checkFreeSpace(dirname(staging), planned, present);
  const files = planned.map((file, i) => ({ path: file.target, size: file.size, present: present[i] }));
  options.onEvent?.({ type: 'plan', repo, revision, files, unsafe });

  const transfer = new Transfer(client, repo, revision, options);
  for (const [index, file] of planned.entries()) await transfer.fetch(file, destinations[index]);
  return transfer;
}

function checksumField(file: PlannedFile) {
  return file.lfs ? { sha256: file.lfs.oid } : { gitOid: file.oid };
}

/** Keeps a staging directory from an earlier try of the same pull; anything else there is cleared away. */
async function prepareStaging(staging: string, source: object, planned: PlannedFile[]): Promise<void> {
  const sourceText = JSON.stringify(source);
  const previous = await readFile(join(staging, SOURCE_FILE), 'utf8').catch(() => undefined);
  if (previous !== sourceText) await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { recursive: true });
  await writeFile(join(staging, SOURCE_FILE), sourceText);

  const keep = new Set([SOURCE_FILE, ...planned.flatMap((file) => [file.target, file.target + INCOMPLETE])]);
  for (const file of await filesBelow(staging)) {
    if (!keep.has(file)) await rm(join(staging, file), { force: true });
  }
}

async function presentBytes(staging: string, file: PlannedFile): Promise<number> {
  const done = await stat(join(staging, file.target)).catch(() => undefined);
  if (done) return done.size === file.size ? file.size : 0;
  const partial = await stat(join(staging, file.target + INCOMPLETE)).catch(() => undefined);
  return partial && partial.size <= file.size ? partial.size : 0;
}

async function checkFreeSpace(modelsDir: string, planned: PlannedFile[], present: number[]): Promise<void> {
  const needed = planned.reduce((sum, file, i) => sum + file.size - present[i], 0);
  const stats = await statfs(modelsDir).catch(() => undefined);
  if (!stats) return;
  const free = stats.bavail * stats.bsize;
  if (free < needed) {
    throw new Error(`Not enough disk space in ${modelsDir}: the pull needs ${formatBytes(needed)} more, ${formatBytes(free)} is free.`);
  }
}

/** Renames a complete staging folder to `target`, replacing (only then) a folder already there. */
export async function placeModel(staging: string, target: string): Promise<void> {
  if (!existsSync(target)) {
    await rename(staging, target);
    return;
  }
  const retired = `${dirname(target)}/.${target.split(/[\\/]/).pop()}.replaced-${process.pid}`;
  await rename(target, retired);
  try {
    await rename(staging, target);
  } catch (error) {
    await rename(retired, target);
    throw error;
  }
  await rm(retired, { recursive: true, force: true });
}

/** `path` relative to the working directory when it lies below it, else absolute. */
export function displayPath(path: string): string {
  const shown = relative(process.cwd(), path);
  return shown === '' || shown.startsWith('..') || isAbsolute(shown) ? path : shown;
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 2 : value < 100 ? 1 : 0)} ${units[unit]}`;
}

/** Downloads files one by one into the staging directory, resuming `.incomplete` files with Range requests. */
class Transfer {
  commit: string | undefined;
  downloadedBytes = 0;

  constructor(
    private readonly client: HubClient,
    private readonly repo: string,
    private readonly revision: string,
    private readonly options: PullOptions,
  ) {}

  async fetch(file: PlannedFile, destination: string): Promise<void> {
    const emit = this.options.onEvent ?? (() => {});
    if (existsSync(destination)) {
      if (await fileMatches(destination, file.size, checksumFor(file))) {
        emit({ type: 'file-done', path: file.target, size: file.size, reused: true });
        return;
      }
      await rm(destination);
    }
    await mkdir(dirname(destination), { recursive: true });
    const partial = destination + INCOMPLETE;
    let idleFailures = 0;
    for (;;) {
      const before = this.downloadedBytes;
      try {
        await this.transferOnce(file, partial);
        await rename(partial, destination);
        emit({ type: 'file-done', path: file.target, size: file.size, reused: false });
        return;
      } catch (error) {
        idleFailures = this.downloadedBytes > before ? 1 : idleFailures + 1;
        const retryable = error instanceof HubError && error.retryable && !this.options.signal?.aborted;
        if (!retryable || idleFailures >= MAX_IDLE_FAILURES) throw error;
        const delayMs = this.client.retryDelayMs * 2 ** (idleFailures - 1);
        emit({ type: 'retry', path: file.target, reason: (error as Error).message, delayMs });
        await sleep(delayMs, undefined, { signal: this.options.signal });
      }
    }
  }

  private async transferOnce(file: PlannedFile, partial: string): Promise<void> {
    const emit = this.options.onEvent ?? (() => {});
    let offset = (await stat(partial).catch(() => undefined))?.size ?? 0;
    if (offset > file.size) offset = 0;
    const handle = await open(partial, offset > 0 ? 'r+' : 'w');
    try {
      if (offset === file.size) {
        // Complete but not yet verified when the last run stopped (or an empty file): nothing to fetch.
        emit({ type: 'file-start', path: file.target, size: file.size, offset });
        const checksum = checksumFor(file);
        const matches = await fileMatches(partial, file.size, checksum);
        await this.settle(file, matches, checksum.algorithm, 'another digest', checksum.expected, partial, offset > 0);
        return;
      }
      // The kept part is hashed before the request: undici can drop a body that is not read at once (an early
      // close then looks like a clean end), so the transfer must start reading as soon as the response arrives.
      const listed = checksumFor(file);
      const prefixHash = startHash(listed, file.size);
      await hashFilePrefix(prefixHash, partial, offset);

      const stall = new AbortController();
      const signal = this.options.signal ? AbortSignal.any([this.options.signal, stall.signal]) : stall.signal;
      const response = await this.client.openFile(this.repo, this.revision, file.path, offset, signal);
      this.noteCommit(response.commit, file.path);
      this.checkAdvertisedSize(file, response.totalSize);
      if (response.status === 200 && offset > 0) {
        offset = 0;
        await handle.truncate(0);
      } else if (response.status === 206 && response.start !== offset) {
        await response.body.cancel();
        throw new HubError(`${file.path}: asked for bytes from ${offset}, the server sent from ${response.start}`, 206, true);
      }
      // The checksum changes only for a listing without LFS details whose file turns out to have an X-Linked-Etag;
      // a resumed file of that kind is hashed from disk at the end.
      const checksum = checksumFor(file, response.etag);
      const hash = offset === 0 ? startHash(checksum, file.size) : checksum.expected === listed.expected ? prefixHash : undefined;
      emit({ type: 'file-start', path: file.target, size: file.size, offset });

      const stallMs = this.options.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS;
      let timer = setTimeout(() => stall.abort(), stallMs);
      let position = offset;
      try {
        for await (const chunk of response.body) {
          clearTimeout(timer);
          timer = setTimeout(() => stall.abort(), stallMs);
          if (position + chunk.length > file.size) throw new HubError(`${file.path}: the server sent more than the ${file.size} bytes the listing gives`);
          await handle.write(chunk, 0, chunk.length, position);
          hash?.update(chunk);
          position += chunk.length;
          this.downloadedBytes += chunk.length;
          emit({ type: 'bytes', path: file.target, bytes: chunk.length });
        }
      } catch (error) {
        if (error instanceof HubError) throw error;
        if (this.options.signal?.aborted) throw this.options.signal.reason ?? error;
        const why = stall.signal.aborted ? `no data for ${stallMs / 1000} s` : (((error as Error).cause as Error)?.message ?? (error as Error).message);
        throw new HubError(`${file.path}: the transfer broke off at byte ${position} of ${file.size} (${why})`, undefined, true);
      } finally {
        clearTimeout(timer);
      }
      if (position !== file.size) throw new HubError(`${file.path}: the transfer ended at byte ${position} of ${file.size}`, undefined, true);
      const actual = hash ? hash.digest('hex') : (await fileMatches(partial, file.size, checksum)) ? checksum.expected : 'another digest';
      await this.settle(file, actual === checksum.expected, checksum.algorithm, actual, checksum.expected, partial, offset > 0);
    } finally {
      await handle.close();
    }
  }

  /** Accepts a verified file; otherwise discards it, retrying once from scratch when the kept part may be stale. */
  private async settle(file: PlannedFile, matches: boolean, algorithm: string, actual: string, expected: string, partial: string, resumed: boolean): Promise<void> {
    if (matches) return;
    await rm(partial, { force: true });
    if (resumed) {
      // The kept part may come from an older commit of the file: fetch it whole once more.
      throw new HubError(`${file.path}: the resumed download did not verify; starting the file over`, undefined, true);
    }
    throw new Error(
      `${file.path} failed verification: its ${algorithm} is ${actual} but the hub lists ${expected}. ` +
        'The download was discarded and no model was installed; run the pull again, and if this repeats the repository or a proxy is serving damaged files.',
    );
  }

  private checkAdvertisedSize(file: PlannedFile, advertised: number | undefined): void {
    if (advertised !== undefined && advertised !== file.size) {
      throw new Error(`${file.path}: the hub serves ${advertised} bytes but its listing says ${file.size}; the repository may have changed during the pull, run it again.`);
    }
  }

  private noteCommit(commit: string | undefined, path: string): void {
    if (!commit) return;
    if (this.commit === undefined) this.commit = commit;
    else if (commit !== this.commit) {
      throw new Error(`${this.repo} changed during the pull (commit ${this.commit.slice(0, 10)}, then ${commit.slice(0, 10)} for ${path}); run the pull again.`);
    }
  }
}
