/**
 * A small "browser" (fetch + cookie jar, no JavaScript) that walks Gatehouse's login and consent
 * pages the way a user would, and OAuth helpers for tests.
 */
import { createHash, randomBytes } from 'node:crypto';
import { TEST_PASSWORD } from './app.ts';

export class CookieJar {
  readonly #cookies = new Map<string, { value: string; path: string }>();

  store(response: Response): void {
    for (const header of response.headers.getSetCookie()) {
      const [pair, ...attrs] = header.split(';');
      const eq = pair!.indexOf('=');
      const name = pair!.slice(0, eq).trim();
      const value = pair!.slice(eq + 1).trim();
      const path = attrs.map((a) => a.trim()).find((a) => a.toLowerCase().startsWith('path='))?.slice(5) ?? '/';
      const expired = attrs.some((a) => /^\s*expires=thu, 01 jan 1970/i.test(a)) || attrs.some((a) => /^\s*max-age=0/i.test(a));
      const key = `${name};${path}`;
      if (expired || !value) this.#cookies.delete(key);
      else this.#cookies.set(key, { value, path });
    }
  }

  header(url: URL): string {
    return [...this.#cookies.entries()]
      .filter(([, c]) => url.pathname.startsWith(c.path))
      .map(([key, c]) => `${key.split(';')[0]}=${c.value}`)
      .join('; ');
  }
}

export async function browse(jar: CookieJar, url: string | URL, init: RequestInit = {}, fetchImpl: typeof fetch = fetch): Promise<Response> {
  const target = new URL(url);
  const headers = new Headers(init.headers);
  const cookie = jar.header(target);
  if (cookie) headers.set('cookie', cookie);
  const response = await fetchImpl(target, { ...init, headers, redirect: 'manual' });
  jar.store(response);
  return response;
}

export interface BrowserResult {
  /** The URL Gatehouse finally redirected to (the client's redirect URI with code or error). */
  callback: URL;
  /** Every HTML page shown on the way, for assertions about what the user saw. */
  pages: string[];
}

export interface BrowserOptions {
  email?: string;
  password?: string;
  decision?: 'allow' | 'deny';
  jar?: CookieJar;
  /** For a Gatehouse serving TLS with the test CA (test/support/https-fetch.ts). */
  fetch?: typeof fetch;
}

function formField(html: string, name: string): string | undefined {
  return new RegExp(`name="${name}" value="([^"]*)"`).exec(html)?.[1];
}

/**
 * Follows an authorization request through sign-in and consent until Gatehouse redirects to a URL
 * that is not its own (the client's redirect URI).
 */
export async function authorizeInBrowser(authorizationUrl: string | URL, options: BrowserOptions = {}): Promise<BrowserResult> {
  const jar = options.jar ?? new CookieJar();
  const origin = new URL(authorizationUrl).origin;
  const pages: string[] = [];
  const go = (url: string | URL, init?: RequestInit) => browse(jar, url, init, options.fetch);
  let response = await go(authorizationUrl);
  for (let step = 0; step < 20; step++) {
    if (response.status >= 300 && response.status < 400) {
      const location = new URL(response.headers.get('location')!, response.url || origin);
      if (location.origin !== origin || !location.protocol.startsWith('http')) return { callback: location, pages };
      response = await go(location);
      continue;
    }
    const html = await response.text();
    pages.push(html);
    if (response.status !== 200) throw new Error(`unexpected page ${response.status}: ${html.slice(0, 500)}`);
    const action = /<form method="post" action="([^"]+)"/.exec(html)?.[1];
    if (!action) throw new Error(`page without a form: ${html.slice(0, 500)}`);
    const csrf = formField(html, 'csrf') ?? '';
    const body = new URLSearchParams({ csrf });
    if (action.endsWith('/login')) {
      body.set('email', options.email ?? 'alice@example.com');
      body.set('password', options.password ?? TEST_PASSWORD);
    } else {
      body.set('decision', options.decision ?? 'allow');
    }
    response = await go(new URL(action, origin), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body,
    });
  }
  throw new Error('too many steps');
}

export function pkcePair(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

export const REDIRECT_URI = 'http://127.0.0.1:53682/callback';

let registrations = 0;

/**
 * Registers a new public client. Each call is another client: the default name is numbered, since
 * Gatehouse recognises identical metadata as the same client (clients/recognition.ts).
 */
export async function registerClient(issuer: string, body: Record<string, unknown> = {}) {
  const response = await fetch(`${issuer}/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ client_name: `Test MCP Client ${++registrations}`, redirect_uris: [REDIRECT_URI], token_endpoint_auth_method: 'none', ...body }),
  });
  const json = (await response.json()) as Record<string, any>;
  if (response.status !== 201) throw new Error(`registration failed: ${response.status} ${JSON.stringify(json)}`);
  return json;
}

/** A code request for `client` at its first redirect URI, with a fresh S256 challenge (the verifier is not kept). */
export function codeAuthorizationUrl(issuer: string, client: Record<string, any>, extra: Record<string, string | undefined> = {}): URL {
  return authorizationUrl(issuer, {
    client_id: client.client_id,
    response_type: 'code',
    redirect_uri: client.redirect_uris[0],
    code_challenge: pkcePair().challenge,
    code_challenge_method: 'S256',
    ...extra,
  });
}

export function authorizationUrl(issuer: string, params: Record<string, string | undefined>): URL {
  const url = new URL(`${issuer}/authorize`);
  for (const [k, v] of Object.entries(params)) if (v !== undefined) url.searchParams.append(k, v);
  return url;
}

export async function tokenRequest(issuer: string, params: Record<string, string | string[]>, headers: Record<string, string> = {}) {
  const body = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) for (const value of [v].flat()) body.append(k, value);
  const response = await fetch(`${issuer}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body,
  });
  return { status: response.status, body: (await response.json()) as Record<string, any>, headers: response.headers };
}

/** Runs /authorize through sign-in and consent for `client`, with PKCE; returns the code and its verifier. */
export async function authorizeForCode(
  issuer: string,
  client: Record<string, any>,
  options: { resource?: string | undefined; scope?: string | undefined; state?: string; jar?: CookieJar | undefined } = {},
) {
  const { verifier, challenge } = pkcePair();
  const { callback } = await authorizeInBrowser(
    authorizationUrl(issuer, {
      client_id: client.client_id,
      response_type: 'code',
      redirect_uri: client.redirect_uris[0],
      code_challenge: challenge,
      code_challenge_method: 'S256',
      state: options.state,
      resource: options.resource,
      scope: options.scope,
    }),
    { jar: options.jar },
  );
  const code = callback.searchParams.get('code');
  if (!code) throw new Error(`no code: ${callback}`);
  return { code, verifier, callback };
}

export function exchangeCode(issuer: string, client: Record<string, any>, code: string, verifier: string, resource?: string | string[]) {
  return tokenRequest(issuer, {
    grant_type: 'authorization_code',
    code,
    code_verifier: verifier,
    redirect_uri: client.redirect_uris[0],
    client_id: client.client_id,
    ...(resource ? { resource } : {}),
  });
}

/** Registers a public client and runs the whole flow to a code, then exchanges it. */
export async function obtainTokens(
  issuer: string,
  options: { resource?: string; scope?: string; client?: Record<string, any>; jar?: CookieJar } = {},
) {
  const client = options.client ?? (await registerClient(issuer));
  const resource = options.resource ?? 'https://mcp.example.com';
  const state = randomBytes(8).toString('hex');
  const { code, verifier, callback } = await authorizeForCode(issuer, client, { resource, scope: options.scope, state, jar: options.jar });
  const tokens = await exchangeCode(issuer, client, code, verifier, resource);
  return { client, tokens, callback, state };
}
