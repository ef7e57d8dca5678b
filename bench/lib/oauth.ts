/**
 * The OAuth client side of the benchmark, spoken over HTTP to either server: dynamic registration,
 * a cookie-jar "browser" that walks the login and consent pages (Gatehouse's own, or oidc-provider's
 * devInteractions on the ceiling), code exchange and refresh.
 */
import { createHash, randomBytes } from 'node:crypto';
import { CookieJar, browse } from '../../test/support/oauth.ts';

export type ServerKind = 'gatehouse' | 'ceiling';

export interface Target {
  kind: ServerKind;
  /** http://localhost:PORT */
  issuer: string;
}

/** The one MCP server both authorization servers issue tokens for. */
export const RESOURCE = 'https://mcp.example.com';
export const SCOPE = 'files:read';
/** An https redirect URI makes a "web" client: with a session and remembered consent, /authorize answers with a code at once. */
export const WEB_REDIRECT_URI = 'https://client.bench.example/callback';
/** The user seeded at Gatehouse (the ceiling's devInteractions accept any name and password). */
export const USER = { email: 'bench@example.com', password: 'bench password 4 gatehouse' };

export interface RegisteredClient {
  client_id: string;
  redirect_uri: string;
}

export interface Tokens {
  access_token: string;
  refresh_token: string;
  token_type: string;
  expires_in: number;
}

let names = 0;
/** A client name unique in this process (Gatehouse recognises identical public-client metadata as the same client). */
export function uniqueClientName(prefix: string): string {
  return `${prefix} ${process.pid}-${Date.now().toString(36)}-${++names}`;
}

/** The RFC 7591 registration body an MCP client with an https callback sends. */
export function registrationBody(clientName: string): string {
  return JSON.stringify({
    client_name: clientName,
    redirect_uris: [WEB_REDIRECT_URI],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
  });
}

export async function registerClient(target: Target, prefix = 'bench client'): Promise<RegisteredClient> {
  const response = await fetch(`${target.issuer}/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: registrationBody(uniqueClientName(prefix)),
  });
  const text = await response.text();
  if (response.status !== 201) throw new Error(`${target.kind}: registration answered ${response.status}: ${text.slice(0, 300)}`);
  const body = JSON.parse(text) as { client_id: string };
  return { client_id: body.client_id, redirect_uri: WEB_REDIRECT_URI };
}

export function pkcePair(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

/** The visible text of an HTML page, shortened: what an error page says. */
function pageText(html: string): string {
  return html
    .replace(/<(style|script|head)\b[\s\S]*?<\/\1>/gi, ' ')
    .replace(/<[^>]+>/g, ' ')
    .replace(/\s+/g, ' ')
    .trim()
    .slice(0, 200);
}

function decodeEntities(value: string): string {
  return value.replace(/&amp;/g, '&').replace(/&#x2F;/gi, '/').replace(/&#47;/g, '/').replace(/&quot;/g, '"').replace(/&#39;/g, "'");
}

function attribute(tag: string, name: string): string | undefined {
  const value = new RegExp(`\\s${name}="([^"]*)"`, 'i').exec(tag)?.[1];
  return value === undefined ? undefined : decodeEntities(value);
}

interface PageForm {
  action: string;
  fields: URLSearchParams;
  kind: 'login' | 'consent';
}

/**
 * Reads the first form on a login or consent page and fills it in as the user would: sign in as
 * {@link USER} (field `email` at Gatehouse, `login` on devInteractions), or allow.
 */
function fillForm(html: string): PageForm {
  const formTag = /<form\b[^>]*>/i.exec(html)?.[0];
  const action = formTag ? attribute(formTag, 'action') : undefined;
  if (!formTag || !action) throw new Error(`page without a form: ${html.replace(/<style>[\s\S]*?<\/style>/, "").slice(0, 1500)}`);
  const fields = new URLSearchParams();
  let loginField: string | undefined;
  let hasPassword = false;
  for (const input of html.match(/<input\b[^>]*>/gi) ?? []) {
    const name = attribute(input, 'name');
    const type = (attribute(input, 'type') ?? 'text').toLowerCase();
    if (!name) continue;
    if (type === 'hidden') fields.set(name, attribute(input, 'value') ?? '');
    else if (type === 'password') hasPassword = true;
    else if (name === 'email' || name === 'login') loginField = name;
  }
  if (hasPassword) {
    fields.set(loginField ?? 'email', USER.email);
    fields.set('password', USER.password);
    return { action, fields, kind: 'login' };
  }
  if (/<button\b[^>]*name="decision"/i.test(html)) fields.set('decision', 'allow');
  return { action, fields, kind: 'consent' };
}

export interface AuthorizeResult {
  code: string;
  verifier: string;
  /** HTTP requests the browser made, and which pages it went through. */
  requests: number;
  pages: Array<'login' | 'consent'>;
}

/**
 * A browser with its own cookie jar. Its first authorization signs in; afterwards the session is
 * live, and a client the user already consented to gets a code from one /authorize request.
 */
export class Browser {
  readonly jar = new CookieJar();
  constructor(readonly target: Target) {}

  async authorize(client: RegisteredClient, hooks: { beforeRequest?: (label: string) => void } = {}): Promise<AuthorizeResult> {
    const { verifier, challenge } = pkcePair();
    const state = randomBytes(8).toString('base64url');
    const url = new URL(`${this.target.issuer}/authorize`);
    url.search = new URLSearchParams({
      client_id: client.client_id,
      response_type: 'code',
      redirect_uri: client.redirect_uri,
      code_challenge: challenge,
      code_challenge_method: 'S256',
      scope: SCOPE,
      resource: RESOURCE,
      state,
    }).toString();
    const origin = new URL(this.target.issuer).origin;
    const pages: Array<'login' | 'consent'> = [];
    let requests = 1;
    hooks.beforeRequest?.('authorize');
    let response = await browse(this.jar, url);
    for (let step = 0; step < 20; step++) {
      if (response.status >= 300 && response.status < 400) {
        await response.arrayBuffer();
        const location = new URL(response.headers.get('location') ?? '', origin);
        if (location.origin !== origin) {
          const code = location.searchParams.get('code');
          if (!code || location.searchParams.get('state') !== state) {
            throw new Error(`${this.target.kind}: authorization ended without a code: ${location.toString().slice(0, 300)}`);
          }
          return { code, verifier, requests, pages };
        }
        requests++;
        hooks.beforeRequest?.(location.pathname.startsWith('/interaction') ? 'interaction page' : 'resume');
        response = await browse(this.jar, location);
        continue;
      }
      const html = await response.text();
      if (response.status !== 200) throw new Error(`${this.target.kind}: unexpected page ${response.status}: ${pageText(html)}`);
      const form = fillForm(html);
      pages.push(form.kind);
      requests++;
      hooks.beforeRequest?.(form.kind);
      response = await browse(this.jar, new URL(form.action, origin), {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: form.fields,
      });
    }
    throw new Error(`${this.target.kind}: too many steps in the authorization flow`);
  }
}

async function tokenRequest(target: Target, params: Record<string, string>): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${target.issuer}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(params),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

export function codeExchangeBody(client: RegisteredClient, code: string, verifier: string): string {
  return new URLSearchParams({
    grant_type: 'authorization_code',
    code,
    code_verifier: verifier,
    redirect_uri: client.redirect_uri,
    client_id: client.client_id,
    resource: RESOURCE,
  }).toString();
}

export function refreshBody(clientId: string, refreshToken: string): string {
  return new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken, client_id: clientId, resource: RESOURCE }).toString();
}

function checkTokens(target: Target, what: string, r: { status: number; body: Record<string, unknown> }): Tokens {
  if (r.status !== 200 || typeof r.body.access_token !== 'string' || typeof r.body.refresh_token !== 'string') {
    throw new Error(`${target.kind}: ${what} answered ${r.status}: ${JSON.stringify(r.body).slice(0, 300)}`);
  }
  return r.body as unknown as Tokens;
}

export async function exchangeCode(target: Target, client: RegisteredClient, code: string, verifier: string): Promise<Tokens> {
  return checkTokens(target, 'code exchange', await tokenRequest(target, Object.fromEntries(new URLSearchParams(codeExchangeBody(client, code, verifier)))));
}

export async function refresh(target: Target, clientId: string, refreshToken: string): Promise<Tokens> {
  return checkTokens(target, 'refresh', await tokenRequest(target, Object.fromEntries(new URLSearchParams(refreshBody(clientId, refreshToken)))));
}

/** Runs `task` for every item with at most `concurrency` at once; results keep the input order. */
export async function mapConcurrent<T, R>(items: readonly T[], concurrency: number, task: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await task(items[index]!, index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  return results;
}
