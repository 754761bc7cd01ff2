import type { IncomingMessage, ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { DiscordErrors, DiscordHttpError } from './errors.ts';
import type { FaultInjector } from './faults.ts';
import type { MessageStore } from './messages.ts';
import { readRequestBody, type ParsedBody } from './request-body.ts';
import type { Router } from './router.ts';

/** One REST request the fake received, with the answer it gave. */
export interface RequestRecord {
  readonly at: Date;
  readonly method: string;
  /** Path below /api/v10, e.g. `/webhooks/123/abc/messages/@original`. */
  readonly path: string;
  /** The matched route template, or null when the fake has no such route. */
  readonly route: string | null;
  readonly query: Readonly<Record<string, string>>;
  readonly status: number;
  readonly durationMs: number;
  /** True when `failNext` produced the answer. */
  readonly injectedFault: boolean;
  /** Discord JSON error code of an error answer. */
  readonly errorCode: number | undefined;
  /** JSON body, or the payload_json of a multipart body. */
  readonly json: unknown;
  readonly files: readonly { readonly field: string; readonly filename: string; readonly contentType: string | undefined; readonly size: number }[];
}

interface Answer {
  readonly status: number;
  readonly json?: unknown;
  readonly headers?: Readonly<Record<string, string>>;
}

export interface ApiServerDeps {
  readonly router: Router;
  readonly faults: FaultInjector;
  readonly messages: MessageStore;
  readonly botToken: string;
}

const API_PREFIX = /^\/api\/v10(\/.*)$/;

// discord.js percent-encodes segments (`@original` arrives as `%40original`); routes and the log use decoded segments.
function decodePath(path: string): string {
  return path
    .split('/')
    .map((segment) => {
      try {
        return decodeURIComponent(segment);
      } catch {
        return segment;
      }
    })
    .join('/');
}

/** Handles HTTP: /api/v10 REST with logging, fault injection and auth, plus downloads of stored attachments. */
export class ApiServer {
  readonly requests: RequestRecord[] = [];
  readonly internalErrors: Error[] = [];
  readonly #deps: ApiServerDeps;
  readonly #closing = new AbortController();

  constructor(deps: ApiServerDeps) {
    this.#deps = deps;
  }

  async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://fake');
    const attachment = /^\/attachments\/(\d+)\/(\d+)\/[^/]+$/.exec(url.pathname);
    if (attachment && request.method === 'GET') {
      const stored = this.#deps.messages.attachment(attachment[1], attachment[2]);
      if (!stored) return this.#send(response, { status: 404, json: DiscordErrors.notFound().body() });
      response.writeHead(200, { 'content-type': stored.contentType ?? 'application/octet-stream', 'content-length': stored.data.length });
      response.end(stored.data);
      return;
    }
    await this.#handleApi(request, response, url);
  }

  async #handleApi(request: IncomingMessage, response: ServerResponse, url: URL): Promise<void> {
    const started = performance.now();
    const at = new Date();
    const method = (request.method ?? 'GET').toUpperCase();
    const path = decodePath(API_PREFIX.exec(url.pathname)?.[1] ?? url.pathname);
    const match = API_PREFIX.test(url.pathname) ? this.#deps.router.match(method, path) : ({ kind: 'not-found' } as const);
    const route = match.kind === 'found' ? match.route.template : match.kind === 'method-not-allowed' ? match.template : null;
    let body: ParsedBody = { json: undefined, files: [] };
    let injectedFault = false;
    let answer: Answer;
    try {
      body = await readRequestBody(request);
      const fault = this.#deps.faults.take(method, path, route);
      if (fault) {
        injectedFault = true;
        answer = fault;
      } else {
        answer = this.#route(request, match, url, body);
      }
    } catch (error) {
      answer = this.#errorAnswer(error, method, path);
    }
    const delayMs = this.#deps.faults.takeDelay(method, path, route);
    if (delayMs > 0) await sleep(delayMs, undefined, { signal: this.#closing.signal }).catch(() => undefined);
    this.#send(response, answer);
    const errorJson = answer.status >= 400 && typeof answer.json === 'object' && answer.json !== null ? (answer.json as { code?: unknown }) : undefined;
    this.requests.push({
      at,
      method,
      path,
      route,
      query: Object.fromEntries(url.searchParams),
      status: answer.status,
      durationMs: performance.now() - started,
      injectedFault,
      errorCode: typeof errorJson?.code === 'number' ? errorJson.code : undefined,
      json: body.json,
      files: body.files.map((f) => ({ field: f.field, filename: f.filename, contentType: f.contentType, size: f.data.length })),
    });
  }

  /** Gives up the answers still being delayed. */
  close(): void {
    this.#closing.abort();
  }

  #route(request: IncomingMessage, match: ReturnType<Router['match']>, url: URL, body: ParsedBody): Answer {
    if (match.kind === 'not-found') throw DiscordErrors.notFound();
    if (match.kind === 'method-not-allowed') throw DiscordErrors.methodNotAllowed();
    if (match.route.auth === 'bot' && request.headers.authorization !== `Bot ${this.#deps.botToken}`) throw DiscordErrors.unauthorized();
    return match.route.handle({ params: match.params, query: url.searchParams, body });
  }

  #errorAnswer(error: unknown, method: string, path: string): Answer {
    if (error instanceof DiscordHttpError) return { status: error.status, json: error.body() };
    const wrapped = new Error(`fake discord crashed on ${method} ${path}: ${(error as Error)?.message ?? String(error)}`, { cause: error });
    this.internalErrors.push(wrapped);
    return { status: 500, json: { message: wrapped.message, code: 0 } };
  }

  #send(response: ServerResponse, answer: Answer): void {
    const headers: Record<string, string> = { ...answer.headers };
    if (answer.json === undefined) {
      response.writeHead(answer.status, headers);
      response.end();
      return;
    }
    const text = JSON.stringify(answer.json);
    response.writeHead(answer.status, { ...headers, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) });
    response.end(text);
  }
}
