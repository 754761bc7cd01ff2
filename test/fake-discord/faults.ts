import { createHash } from 'node:crypto';
import { DiscordErrors } from './errors.ts';

/** What `fake.failNext` takes. */
export interface FaultSpec {
  /** HTTP method to match (any when omitted). */
  readonly method?: string;
  /** RegExp: tested against the path (`/webhooks/123/abc/messages/@original`). String: equal to the route template
   *  (`/webhooks/:application/:token/messages/@original`) or to the path. Paths exclude the `/api/v10` prefix. */
  readonly route: RegExp | string;
  readonly status: 500 | 429 | 403 | 400;
  /** How many matching requests fail (default 1). */
  readonly times?: number;
  /** 429 only: seconds to wait, sent as Retry-After, X-RateLimit-Reset-After and JSON retry_after (default 0.1). */
  readonly retryAfter?: number;
  /** 429 only: a global rate limit (X-RateLimit-Global, global: true). */
  readonly global?: boolean;
  /** 403 only: 50013 Missing Permissions (default) or 50001 Missing Access. */
  readonly code?: 50013 | 50001;
}

/** What `fake.delayNext` takes: the request takes effect at once, its answer is sent `delayMs` later. */
export interface DelaySpec {
  readonly method?: string;
  /** As in FaultSpec. */
  readonly route: RegExp | string;
  readonly delayMs: number;
  /** How many matching requests are answered late (default 1). */
  readonly times?: number;
}

/** A registered fault; tells how often it fired. */
export interface FaultRule {
  readonly spec: FaultSpec;
  readonly hits: number;
  readonly remaining: number;
}

export interface FaultResponse {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly json: unknown;
}

class Rule implements FaultRule {
  hits = 0;
  constructor(readonly spec: FaultSpec) {}

  get remaining(): number {
    return (this.spec.times ?? 1) - this.hits;
  }
}

function validate(spec: FaultSpec): void {
  if (![500, 429, 403, 400].includes(spec.status)) throw new Error(`fake.failNext: status must be 500, 429, 403 or 400, got ${spec.status}`);
  if (spec.times !== undefined && (!Number.isInteger(spec.times) || spec.times < 1)) throw new Error(`fake.failNext: times must be a positive integer, got ${spec.times}`);
  if (spec.retryAfter !== undefined && !(spec.retryAfter >= 0)) throw new Error(`fake.failNext: retryAfter must be >= 0 seconds, got ${spec.retryAfter}`);
  if (spec.code !== undefined && spec.status !== 403) throw new Error('fake.failNext: code only applies to status 403');
}

class DelayRule {
  hits = 0;
  constructor(readonly spec: DelaySpec) {}

  get remaining(): number {
    return (this.spec.times ?? 1) - this.hits;
  }
}

/** Pending failures and delays for upcoming requests, consumed first come first served. */
export class FaultInjector {
  readonly #rules: Rule[] = [];
  readonly #delays: DelayRule[] = [];

  addDelay(spec: DelaySpec): { readonly hits: number; readonly remaining: number } {
    if (!(spec.delayMs >= 0)) throw new Error(`fake.delayNext: delayMs must be >= 0, got ${spec.delayMs}`);
    if (spec.times !== undefined && (!Number.isInteger(spec.times) || spec.times < 1)) throw new Error(`fake.delayNext: times must be a positive integer, got ${spec.times}`);
    const rule = new DelayRule(spec);
    this.#delays.push(rule);
    return rule;
  }

  /** How long the answer to this request waits (0 unless a pending delay matches it); consumes one of its `times`. */
  takeDelay(method: string, path: string, routeTemplate: string | null): number {
    const rule = this.#delays.find((candidate) => candidate.remaining > 0 && matches(candidate.spec, method, path, routeTemplate));
    if (!rule) return 0;
    rule.hits += 1;
    return rule.spec.delayMs;
  }

  add(spec: FaultSpec): FaultRule {
    validate(spec);
    const rule = new Rule(spec);
    this.#rules.push(rule);
    return rule;
  }

  /** The failure this request gets, if a pending rule matches it; consumes one of that rule's `times`. */
  take(method: string, path: string, routeTemplate: string | null): FaultResponse | undefined {
    const rule = this.#rules.find((candidate) => candidate.remaining > 0 && matches(candidate.spec, method, path, routeTemplate));
    if (!rule) return undefined;
    rule.hits += 1;
    return respond(rule.spec, routeTemplate ?? path);
  }
}

function matches(spec: FaultSpec | DelaySpec, method: string, path: string, routeTemplate: string | null): boolean {
  if (spec.method !== undefined && spec.method.toUpperCase() !== method) return false;
  if (spec.route instanceof RegExp) return spec.route.test(path);
  return spec.route === path || spec.route === routeTemplate;
}

function respond(spec: FaultSpec, bucketKey: string): FaultResponse {
  if (spec.status === 403) {
    const error = spec.code === 50001 ? DiscordErrors.missingAccess() : DiscordErrors.missingPermissions();
    return { status: 403, headers: {}, json: error.body() };
  }
  if (spec.status === 500) return { status: 500, headers: {}, json: DiscordErrors.internalServerError().body() };
  if (spec.status === 400) {
    const refused = DiscordErrors.invalidFormBody({ embeds: { 0: { _errors: [{ code: 'EMBED_INVALID', message: 'fake: this embed is refused (failNext)' }] } } });
    return { status: 400, headers: {}, json: refused.body() };
  }
  const retryAfter = spec.retryAfter ?? 0.1;
  const global = spec.global === true;
  const headers: Record<string, string> = {
    'retry-after': String(retryAfter),
    'x-ratelimit-limit': '5',
    'x-ratelimit-remaining': '0',
    'x-ratelimit-reset': (Date.now() / 1000 + retryAfter).toFixed(3),
    'x-ratelimit-reset-after': retryAfter.toFixed(3),
    'x-ratelimit-bucket': createHash('md5').update(bucketKey).digest('hex'),
    'x-ratelimit-scope': global ? 'global' : 'user',
    ...(global ? { 'x-ratelimit-global': 'true' } : {}),
  };
  return { status: 429, headers, json: { message: 'You are being rate limited.', retry_after: retryAfter, global } };
}

