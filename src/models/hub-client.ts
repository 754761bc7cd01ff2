import { setTimeout as sleep } from 'node:timers/promises';

// Plain fetch rather than @huggingface/hub: its listFiles is the only part that would serve here, and it rejects
// tokens that do not start with "hf_", leaves revisions unencoded and only follows absolute Link URLs; resume,
// retries, content verification and keeping the token off the CDN have to be written here either way.

export const DEFAULT_HUB_ENDPOINT = 'https://huggingface.co';

export interface HubSettings {
  /** Base URL of the hub, without a trailing slash (HF_ENDPOINT). */
  endpoint: string;
  /** Access token (HF_TOKEN); sent only to the endpoint's own origin. */
  token?: string;
  /** Tries per request when the hub answers 429 or 5xx or the connection fails. */
  maxAttempts?: number;
  /** First wait between tries; doubles on each retry. A Retry-After header takes precedence. */
  retryDelayMs?: number;
}

const DEFAULT_MAX_ATTEMPTS = 5;
const DEFAULT_RETRY_DELAY_MS = 1000;
const MAX_RETRY_DELAY_MS = 60_000;
const MAX_REDIRECTS = 10;
const MAX_TREE_PAGES = 10_000;

export function hubSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): HubSettings {
  const endpoint = (env.HF_ENDPOINT?.trim() || DEFAULT_HUB_ENDPOINT).replace(/\/+$/, '');
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new Error(`HF_ENDPOINT must be an http(s) URL (got "${env.HF_ENDPOINT}")`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new Error(`HF_ENDPOINT must be an http(s) URL (got "${env.HF_ENDPOINT}")`);
  }
  const token = (env.HF_TOKEN || env.HUGGING_FACE_HUB_TOKEN)?.trim() || undefined;
  return { endpoint, token };
}

/** A failure the user can act on; `retryable` marks transient ones (network, 429, 5xx). */
export class HubError extends Error {
  override name = 'HubError';
  constructor(
    message: string,
    readonly status?: number,
    readonly retryable = false,
  ) {
    super(message);
  }
}

/** One file of a repository as the tree API lists it. */
export interface RepoFile {
  path: string;
  size: number;
  /** Git blob sha1 of the file, or of its LFS pointer when `lfs` is set. */
  oid: string;
  lfs?: { oid: string; size: number };
}

export interface FileResponse {
  /** 200 for the whole file, 206 for the requested range. */
  status: 200 | 206;
  /** First byte of the body within the file. */
  start: number;
  body: ReadableStream<Uint8Array>;
  /** X-Repo-Commit: the commit the revision resolved to. */
  commit: string | undefined;
  /** X-Linked-Etag (sha256 of LFS content) or, for plain files, the hub's ETag (git blob sha1); unquoted. */
  etag: string | undefined;
  /** Size of the whole file as the server gives it: X-Linked-Size, else the Content-Range total, else (for 200) the length. */
  totalSize: number | undefined;
}

interface RequestContext {
  repo: string;
  revision: string;
  path?: string;
}

const REPO_ID = /^(?:[A-Za-z0-9][\w.-]*\/)?[A-Za-z0-9][\w.-]*$/;

export function checkRepoId(repo: string): void {
  if (!REPO_ID.test(repo) || repo.includes('..')) {
    throw new Error(`"${repo}" is not a Hugging Face repository id (expected owner/name, e.g. stabilityai/sd-turbo)`);
  }
}

function encodePath(path: string): string {
  return path.split('/').map(encodeURIComponent).join('/');
}

function unquoteEtag(value: string | null): string | undefined {
  if (!value) return undefined;
  return value.replace(/^W\//, '').replace(/^"|"$/g, '');
}

function parseRetryAfter(value: string | null): number | undefined {
  if (!value) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

function nextPageUrl(link: string | null, base: string): string | undefined {
  if (!link) return undefined;
  for (const part of link.split(',')) {
    const match = /<([^>]+)>\s*;(.*)/.exec(part.trim());
    if (match && /\brel\s*=\s*"?next"?/i.test(match[2])) return new URL(match[1], base).href;
  }
  return undefined;
}

export class HubClient {
  readonly endpoint: string;
  private readonly origin: string;
  private readonly token: string | undefined;
  private readonly maxAttempts: number;
  readonly retryDelayMs: number;

  constructor(settings: HubSettings) {
    this.endpoint = settings.endpoint.replace(/\/+$/, '');
    this.origin = new URL(this.endpoint).origin;
    this.token = settings.token;
    this.maxAttempts = settings.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
    this.retryDelayMs = settings.retryDelayMs ?? DEFAULT_RETRY_DELAY_MS;
  }

  /** Every file under `path` (the whole repository when empty) at `revision`, across all pages of the listing. */
  async listFiles(repo: string, revision: string, path = ''): Promise<RepoFile[]> {
    checkRepoId(repo);
    const context = { repo, revision, path: path || undefined };
    const suffix = path ? `/${encodePath(path)}` : '';
    let url: string | undefined = `${this.endpoint}/api/models/${repo}/tree/${encodeURIComponent(revision)}${suffix}?recursive=true&expand=false`;
    const files: RepoFile[] = [];
    for (let page = 0; url !== undefined; page++) {
      if (page === MAX_TREE_PAGES) throw new HubError(`The file listing of ${repo} did not end after ${MAX_TREE_PAGES} pages`);
      const response = await this.request(url, { accept: 'application/json' }, context);
      if (!response.ok) throw await this.failure(response, context);
      const entries: unknown = await response.json();
      if (!Array.isArray(entries)) throw new HubError(`The hub's file listing for ${repo} is not a JSON array (${url})`);
      for (const entry of entries) {
        if (entry?.type !== 'file') continue;
        if (typeof entry.path !== 'string' || typeof entry.size !== 'number' || typeof entry.oid !== 'string') {
          throw new HubError(`The hub's file listing for ${repo} has an entry without path, size and oid: ${JSON.stringify(entry)}`);
        }
        const lfs = entry.lfs && typeof entry.lfs.oid === 'string' ? { oid: entry.lfs.oid, size: Number(entry.lfs.size) } : undefined;
        files.push({ path: entry.path, size: entry.size, oid: entry.oid, lfs });
      }
      url = nextPageUrl(response.headers.get('link'), url);
    }
    return files;
  }

  /** Opens `path` at `revision` from byte `start` (a Range request when start > 0), following the hub's redirects. */
  async openFile(repo: string, revision: string, path: string, start = 0, signal?: AbortSignal): Promise<FileResponse> {
    checkRepoId(repo);
    const context = { repo, revision, path };
    const url = `${this.endpoint}/${repo}/resolve/${encodeURIComponent(revision)}/${encodePath(path)}`;
    const headers: Record<string, string> = start > 0 ? { range: `bytes=${start}-` } : {};
    const hops: Response[] = [];
    const response = await this.request(url, headers, context, signal, hops);
    if (response.status !== 200 && response.status !== 206) throw await this.failure(response, context);

    const firstHeader = (name: string) => hops.map((hop) => hop.headers.get(name)).find((value) => value !== null) ?? null;
    const hubResponse = hops[0];
    const linkedEtag = unquoteEtag(firstHeader('x-linked-etag'));
    const linkedSize = firstHeader('x-linked-size');
    const lengthHeader = response.headers.get('content-length');
    const length = lengthHeader === null ? undefined : Number(lengthHeader);
    let bodyStart = 0;
    let totalSize = response.status === 200 ? length : undefined;
    if (response.status === 206) {
      const range = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(response.headers.get('content-range') ?? '');
      if (!range) throw new HubError(`${path}: the server answered 206 without a usable Content-Range`, 206, true);
      bodyStart = Number(range[1]);
      if (range[3] !== '*') totalSize = Number(range[3]);
    }
    return {
      status: response.status,
      start: bodyStart,
      body: response.body ?? new ReadableStream({ start: (controller) => controller.close() }),
      commit: firstHeader('x-repo-commit') ?? undefined,
      etag: linkedEtag ?? unquoteEtag(hubResponse.headers.get('etag')),
      totalSize: linkedSize === null ? totalSize : Number(linkedSize),
    };
  }

  /**
   * GET with retries for 429, 5xx and connection failures, following redirects by hand so that the token goes
   * only to the hub's own origin. Every response of the chain is pushed to `hops` (the last one is returned).
   */
  private async request(url: string, headers: Record<string, string>, context: RequestContext, signal?: AbortSignal, hops: Response[] = []): Promise<Response> {
    for (let attempt = 1; ; attempt++) {
      hops.length = 0;
      let response: Response;
      try {
        response = await this.followRedirects(url, headers, hops, signal);
      } catch (error) {
        if (signal?.aborted || error instanceof HubError || attempt >= this.maxAttempts) throw this.connectionFailure(error, url);
        await sleep(this.backoff(attempt, undefined), undefined, { signal });
        continue;
      }
      const transient = response.status === 429 || response.status >= 500;
      if (!transient || attempt >= this.maxAttempts) return response;
      await response.body?.cancel();
      await sleep(this.backoff(attempt, parseRetryAfter(response.headers.get('retry-after'))), undefined, { signal });
    }
  }

  private async followRedirects(url: string, headers: Record<string, string>, hops: Response[], signal?: AbortSignal): Promise<Response> {
    let current = new URL(url);
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      const sendToken = this.token !== undefined && current.origin === this.origin;
      const response = await fetch(current, {
        headers: sendToken ? { ...headers, authorization: `Bearer ${this.token}` } : headers,
        redirect: 'manual',
        signal,
      });
      hops.push(response);
      const location = response.headers.get('location');
      if (response.status < 300 || response.status > 399 || location === null) return response;
      await response.body?.cancel();
      current = new URL(location, current);
    }
    throw new HubError(`More than ${MAX_REDIRECTS} redirects for ${url}`);
  }

  private backoff(attempt: number, retryAfterMs: number | undefined): number {
    return Math.min(retryAfterMs ?? this.retryDelayMs * 2 ** (attempt - 1), MAX_RETRY_DELAY_MS);
  }

  private connectionFailure(error: unknown, url: string): Error {
    if (error instanceof HubError || (error as Error)?.name === 'AbortError') return error as Error;
    const cause = (error as { cause?: { code?: string; message?: string } })?.cause;
    const detail = cause?.code ?? cause?.message ?? (error as Error)?.message;
    return new HubError(`Cannot reach ${new URL(url).origin} (${detail}). Check the network${process.env.HF_ENDPOINT ? ' and HF_ENDPOINT' : ''}.`, undefined, true);
  }

  private async failure(response: Response, context: RequestContext): Promise<HubError> {
    const code = response.headers.get('x-error-code') ?? '';
    let detail = response.headers.get('x-error-message') ?? '';
    const text = await response.text().catch(() => '');
    if (!detail && text) {
      try {
        detail = String(JSON.parse(text).error ?? '');
      } catch {
        detail = text.slice(0, 200);
      }
    }
    const { repo, revision, path } = context;
    const hub = this.endpoint;
    const said = detail ? ` (the hub said: ${detail})` : '';
    const status = response.status;
    const retryable = status === 429 || status >= 500;
    if (status === 401 && this.token === undefined) {
      return new HubError(
        `${repo} was not found on ${hub}, or it is private or gated and needs a token (401 Unauthorized). ` +
          'If it exists, set HF_TOKEN to a Hugging Face access token that can read it.',
        status,
      );
    }
    if (status === 401) {
      return new HubError(`${hub} did not accept HF_TOKEN for ${repo} (401 Unauthorized)${said}. Check that the token is valid and can read this repository.`, status);
    }
    if (code === 'GatedRepo' || (status === 403 && /gated/i.test(detail))) {
      return new HubError(`${repo} is gated: accept its conditions at ${hub}/${repo} with the account that owns HF_TOKEN, then pull again${said}.`, status);
    }
    if (status === 403) return new HubError(`${hub} refused access to ${repo} (403 Forbidden)${said}.`, status);
    if (status === 404) {
      if (code === 'RevisionNotFound') return new HubError(`${repo} has no revision "${revision}" (no such branch, tag or commit).`, status);
      if (code === 'EntryNotFound' || (code === '' && path !== undefined)) {
        return new HubError(`${repo} at revision "${revision}" has no ${path ? `"${path}"` : 'such path'} (404 Not Found).`, status);
      }
      const hint = this.token === undefined ? ' If it is private, set HF_TOKEN.' : '';
      return new HubError(`Model repository ${repo} was not found on ${hub} (404 Not Found).${hint}`, status);
    }
    return new HubError(`${hub} answered ${status} ${response.statusText} for ${path ?? repo}${said}.`, status, retryable);
  }
}
