// A stand-in for the Hugging Face hub on 127.0.0.1, answering the way huggingface.co does for the calls a model
// download makes:
//   GET /api/models/{owner}/{name}/tree/{revision}[/{path}]?recursive=true  JSON entries (files and directories, in
//       no particular order), `lfs: {oid: sha256, size, pointerSize}` on LFS files, pages chained by a Link header
//   GET|HEAD /{owner}/{name}/resolve/{revision}/{path}  small files directly (ETag = git blob sha1); LFS files as a
//       302 to a CDN on another origin with X-Linked-Etag (sha256) and X-Linked-Size; X-Repo-Commit on both; a
//       renamed repository as a relative 307; errors with X-Error-Code / X-Error-Message (401 for unknown or private
//       repositories without a token, 404 with one)
//   CDN GET|HEAD /blobs/{sha256}  the bytes, with Range (206 + Content-Range, 416 when unsatisfiable, e.g. bytes=0-0
//       of an empty file)
// Faults can be switched on per file: a connection cut after N bytes, corrupted bytes, 429/503 with Retry-After.
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface MockRepo {
  files: Map<string, Buffer>;
  commit?: string;
  /** Branch and tag names that resolve to `commit` (default ["main"]). */
  revisions?: string[];
  /** Private repository: only `Authorization: Bearer <token>` may read it. */
  token?: string;
}

export interface MockFaults {
  /** Cut the connection after this many body bytes, for the next `times` CDN transfers of the file. */
  cut?: { path: string; afterBytes: number; times: number };
  /** Serve the file with one byte changed (same length). */
  corrupt?: string;
  /** Answer the next `times` requests (tree listings and resolves) with this status and a Retry-After header. */
  transient?: { status: 429 | 503; times: number; retryAfter: string };
}

export interface LoggedRequest {
  server: 'hub' | 'cdn';
  method: string;
  url: string;
  range?: string;
  authorization?: string;
  status: number;
}

export interface MockHub {
  url: string;
  cdnUrl: string;
  log: LoggedRequest[];
  faults: MockFaults;
  close(): Promise<void>;
}

const LFS_EXTENSIONS = /\.(onnx|pb|onnx_data|data|safetensors|bin|png|msgpack|h5)$/;
const LFS_MIN_SIZE = 10 * 1024 * 1024;

export function gitBlobSha1(content: Buffer): string {
  return createHash('sha1').update(`blob ${content.length}\0`).update(content).digest('hex');
}

export function sha256(content: Buffer): string {
  return createHash('sha256').update(content).digest('hex');
}

function isLfs(path: string, content: Buffer): boolean {
  return LFS_EXTENSIONS.test(path) || content.length >= LFS_MIN_SIZE;
}

interface TreeEntry {
  type: 'file' | 'directory';
  oid: string;
  size: number;
  path: string;
  lfs?: { oid: string; size: number; pointerSize: number };
}

function treeEntries(files: Map<string, Buffer>): TreeEntry[] {
  const entries: TreeEntry[] = [];
  const directories = new Set<string>();
  for (const [path, content] of files) {
    const parts = path.split('/');
    for (let depth = 1; depth < parts.length; depth++) directories.add(parts.slice(0, depth).join('/'));
    if (isLfs(path, content)) {
      const pointer = Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha256(content)}\nsize ${content.length}\n`);
      entries.push({ type: 'file', oid: gitBlobSha1(pointer), size: content.length, path, lfs: { oid: sha256(content), size: content.length, pointerSize: pointer.length } });
    } else {
      entries.push({ type: 'file', oid: gitBlobSha1(content), size: content.length, path });
    }
  }
  for (const path of directories) entries.push({ type: 'directory', oid: createHash('sha1').update(path).digest('hex'), size: 0, path });
  // The hub's order is not alphabetical; a fixed shuffle keeps runs reproducible.
  return entries.sort((a, b) => createHash('md5').update(a.path).digest('hex').localeCompare(createHash('md5').update(b.path).digest('hex')));
}

function parseRange(header: string | undefined, size: number): { start: number; end: number } | 'unsatisfiable' | undefined {
  if (!header) return undefined;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match || (match[1] === '' && match[2] === '')) return undefined;
  let start: number;
  let end: number;
  if (match[1] === '') {
    start = Math.max(0, size - Number(match[2]));
    end = size - 1;
  } else {
    start = Number(match[1]);
    end = match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1);
  }
  if (start >= size || start > end) return 'unsatisfiable';
  return { start, end };
}

function segments(pathname: string): string[] {
  return pathname.split('/').filter(Boolean).map(decodeURIComponent);
}

export async function startMockHub(repos: Record<string, MockRepo>, options: { pageSize?: number; renamed?: Record<string, string> } = {}): Promise<MockHub> {
  const pageSize = options.pageSize ?? 1000;
  const log: LoggedRequest[] = [];
  const faults: MockFaults = {};
  /** Content by sha256, with every repository path that holds it (faults name paths). */
  const blobs = new Map<string, { paths: string[]; content: Buffer }>();
  for (const repo of Object.values(repos)) {
    repo.commit ??= createHash('sha1').update(JSON.stringify([...repo.files.keys()])).digest('hex');
    for (const [path, content] of repo.files) {
      const blob = blobs.get(sha256(content)) ?? { paths: [], content };
      blob.paths.push(path);
      blobs.set(sha256(content), blob);
    }
  }

  const record = (server: 'hub' | 'cdn', request: IncomingMessage, response: ServerResponse) => {
    const entry: LoggedRequest = {
      server,
      method: request.method ?? 'GET',
      url: request.url ?? '',
      range: request.headers.range,
      authorization: request.headers.authorization,
      status: 0,
    };
    log.push(entry);
    return (status: number) => {
      entry.status = status;
    };
  };

  const contentFor = (paths: string[], content: Buffer): Buffer => {
    if (faults.corrupt === undefined || !paths.includes(faults.corrupt) || content.length === 0) return content;
    const damaged = Buffer.from(content);
    damaged[damaged.length >> 1] ^= 0xff;
    return damaged;
  };

  /** Sends a file body honouring Range, and the cut fault. */
  const sendBytes = (request: IncomingMessage, response: ServerResponse, setStatus: (s: number) => void, paths: string[], stored: Buffer, headers: Record<string, string>) => {
    const content = contentFor(paths, stored);
    const range = parseRange(request.headers.range, content.length);
    if (range === 'unsatisfiable') {
      setStatus(416);
      response.writeHead(416, { ...headers, 'Content-Range': `bytes */${content.length}` }).end();
      return;
    }
    const start = range?.start ?? 0;
    const end = range?.end ?? content.length - 1;
    const body = content.subarray(start, end + 1);
    const status = range ? 206 : 200;
    setStatus(status);
    response.writeHead(status, {
      ...headers,
      'Accept-Ranges': 'bytes',
      'Content-Length': String(body.length),
      'Content-Type': 'application/octet-stream',
      ...(range ? { 'Content-Range': `bytes ${start}-${end}/${content.length}` } : {}),
    });
    if (request.method === 'HEAD') return void response.end();
    const cut = faults.cut;
    if (cut && paths.includes(cut.path) && cut.times > 0 && body.length > cut.afterBytes) {
      cut.times--;
      response.write(body.subarray(0, cut.afterBytes), () => setTimeout(() => response.socket?.destroy(), 20));
      return;
    }
    response.end(body);
  };

  const errorResponse = (response: ServerResponse, setStatus: (s: number) => void, status: number, code: string, message: string) => {
    setStatus(status);
    response
      .writeHead(status, { 'Content-Type': 'application/json', 'X-Error-Code': code, 'X-Error-Message': message })
      .end(JSON.stringify({ error: message }));
  };

  const cdn = createServer((request, response) => {
    const setStatus = record('cdn', request, response);
    const [kind, hash] = segments(new URL(request.url ?? '/', 'http://cdn').pathname);
    const blob = kind === 'blobs' ? blobs.get(hash) : undefined;
    if (!blob) {
      setStatus(404);
      return void response.writeHead(404).end('NoSuchKey');
    }
    sendBytes(request, response, setStatus, blob.paths, blob.content, { ETag: `"${createHash('md5').update(blob.content).digest('hex')}"` });
  });

  const hub = createServer((request, response) => {
    const setStatus = record('hub', request, response);
    const url = new URL(request.url ?? '/', 'http://hub');
    const parts = segments(url.pathname);
    const isTree = parts[0] === 'api' && parts[1] === 'models' && parts[4] === 'tree';
    const isResolve = parts[2] === 'resolve';
    if (!isTree && !isResolve) return errorResponse(response, setStatus, 404, 'NotFound', 'Not Found');

    if (faults.transient && faults.transient.times > 0) {
      faults.transient.times--;
      setStatus(faults.transient.status);
      return void response.writeHead(faults.transient.status, { 'Retry-After': faults.transient.retryAfter }).end('Slow down');
    }

    const repoId = isTree ? `${parts[2]}/${parts[3]}` : `${parts[0]}/${parts[1]}`;
    const newName = options.renamed?.[repoId];
    if (newName) {
      const raw = url.pathname.split('/');
      const [owner, name] = newName.split('/');
      if (isTree) raw.splice(3, 2, owner, name);
      else raw.splice(1, 2, owner, name);
      setStatus(307);
      return void response.writeHead(307, { Location: `${raw.join('/')}${url.search}` }).end();
    }

    const repo = repos[repoId];
    const authorization = request.headers.authorization;
    if (repo?.token !== undefined && authorization !== undefined && authorization !== `Bearer ${repo.token}`) {
      return errorResponse(response, setStatus, 401, 'Unauthorized', 'Invalid credentials in Authorization header');
    }
    if (!repo || (repo.token !== undefined && authorization === undefined)) {
      return errorResponse(response, setStatus, authorization ? 404 : 401, 'RepoNotFound', 'Repository not found');
    }
    const revision = isTree ? parts[5] : parts[3];
    if (revision !== repo.commit && !(repo.revisions ?? ['main']).includes(revision)) {
      return errorResponse(response, setStatus, 404, 'RevisionNotFound', `Invalid rev id: ${revision}`);
    }

    if (isTree) {
      const prefix = parts.slice(6).join('/');
      const recursive = url.searchParams.get('recursive') === 'true';
      const entries = treeEntries(repo.files).filter((entry) => {
        if (prefix && !entry.path.startsWith(`${prefix}/`)) return false;
        const rest = prefix ? entry.path.slice(prefix.length + 1) : entry.path;
        return recursive || !rest.includes('/');
      });
      if (prefix && entries.length === 0) return errorResponse(response, setStatus, 404, 'EntryNotFound', `${prefix} does not exist on "${revision}"`);
      const cursor = Number(url.searchParams.get('cursor') ?? 0);
      const page = entries.slice(cursor, cursor + pageSize);
      const headers: Record<string, string> = { 'Content-Type': 'application/json' };
      if (cursor + pageSize < entries.length) {
        const next = new URL(url.pathname + url.search, `http://${request.headers.host}`);
        next.searchParams.set('cursor', String(cursor + pageSize));
        headers.Link = `<${next.href}>; rel="next"`;
      }
      setStatus(200);
      return void response.writeHead(200, headers).end(JSON.stringify(page));
    }

    const path = parts.slice(4).join('/');
    const content = repo.files.get(path);
    if (!content) return errorResponse(response, setStatus, 404, 'EntryNotFound', `${path} does not exist on "${revision}"`);
    const common = { 'X-Repo-Commit': repo.commit! };
    if (isLfs(path, content)) {
      const location = `${cdnUrl}/blobs/${sha256(content)}?X-Amz-Expires=3600&X-Amz-Signature=${createHash('md5').update(path).digest('hex')}`;
      setStatus(302);
      return void response
        .writeHead(302, {
          ...common,
          Location: location,
          ETag: `"${sha256(content)}"`,
          'X-Linked-Etag': `"${sha256(content)}"`,
          'X-Linked-Size': String(content.length),
          'Content-Type': 'text/plain; charset=utf-8',
        })
        .end(`Found. Redirecting to ${location}`);
    }
    sendBytes(request, response, setStatus, [path], content, { ...common, ETag: `"${gitBlobSha1(content)}"` });
  });

  const listen = (server: Server) =>
    new Promise<string>((resolve) => server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)));
  const cdnUrl = await listen(cdn);
  const hubUrl = await listen(hub);
  return {
    url: hubUrl,
    cdnUrl,
    log,
    faults,
    close: async () => {
      for (const server of [hub, cdn]) {
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
      }
    },
  };
}
