import type { ParsedBody } from './request-body.ts';
import type { RouteResult } from './responses.ts';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface RouteContext {
  readonly params: Readonly<Record<string, string>>;
  readonly query: URLSearchParams;
  readonly body: ParsedBody;
}

export interface RouteDefinition {
  readonly method: HttpMethod;
  /** Path below /api/v10 with `:name` parameters, e.g. `/channels/:channel/messages/:message`. */
  readonly template: string;
  /** `bot`: requires `Authorization: Bot <token>`; `none`: interaction and webhook routes, which the token in the path authorises. */
  readonly auth: 'bot' | 'none';
  readonly handle: (context: RouteContext) => RouteResult;
}

export type RouteMatch =
  | { readonly kind: 'found'; readonly route: RouteDefinition; readonly params: Record<string, string> }
  | { readonly kind: 'method-not-allowed'; readonly template: string }
  | { readonly kind: 'not-found' };

function matchTemplate(template: string, path: string): Record<string, string> | undefined {
  const wanted = template.split('/');
  const actual = path.split('/');
  if (wanted.length !== actual.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < wanted.length; i += 1) {
    const segment = wanted[i];
    const value = actual[i];
    if (segment.startsWith(':')) {
      if (value === '' || value.startsWith('@')) return undefined;
      params[segment.slice(1)] = value;
    } else if (segment !== value) {
      return undefined;
    }
  }
  return params;
}

/** Finds the route for a method and a decoded path; literal segments such as `@original` never match a `:param`. */
export class Router {
  readonly #routes: readonly RouteDefinition[];

  constructor(routes: readonly RouteDefinition[]) {
    this.#routes = routes;
  }

  match(method: string, path: string): RouteMatch {
    let templateForOtherMethod: string | undefined;
    for (const route of this.#routes) {
      const params = matchTemplate(route.template, path);
      if (!params) continue;
      if (route.method === method) return { kind: 'found', route, params };
      templateForOtherMethod ??= route.template;
    }
    return templateForOtherMethod ? { kind: 'method-not-allowed', template: templateForOtherMethod } : { kind: 'not-found' };
  }
}
