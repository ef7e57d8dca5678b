/**
 * A hostile, table-driven pass over Gatehouse's public and admin listeners: PKCE, codes, redirect
 * URIs, resource indicators, tokens in the wrong place, refresh-token replay, registration input,
 * CSRF, framing headers, session fixation and brute force. Every refusal asserts the exact status
 * and RFC error code, and that the database did not change (rows in `clients` and `oidc_payloads`).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { decodeJwt } from 'jose';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ADMIN_PASSWORD, createAdmin, csrfOf, formBody, signInAdmin, type AdminBrowser } from '../support/admin.ts';
import { seed, startTestApp, TEST_PASSWORD, type TestApp } from '../support/app.ts';
import { authorizationUrl, authorizeInBrowser, browse, CookieJar, pkcePair, registerClient, tokenRequest } from '../support/oauth.ts';

const RESOURCE = 'https://mcp.example.com';
const OTHER_RESOURCE = 'https://other-mcp.example.com';
const WEB_CB = 'https://app.example.com/cb';
const LOOP_CB = 'http://127.0.0.1:5555/cb';

let app: TestApp;
let admin: AdminBrowser;
let web: Record<string, any>;
let loop: Record<string, any>;
let intruder: Record<string, any>;
/** A signed-in browser, so that codes for the web client come without sign-in each time. */
let userJar: CookieJar;

beforeAll(async () => {
  app = await startTestApp();
  await seed(app, { uri: RESOURCE });
  await app.resources.add({
    uri: OTHER_RESOURCE,
    name: 'Other MCP',
    scopes: [{ name: 'other:read', description: 'Read other things' }],
    accessTokenTtl: 300,
  });
  await createAdmin(app);
  admin = await signInAdmin(app);
  web = await registerClient(app.issuer, { client_name: 'Web client', redirect_uris: [WEB_CB] });
  loop = await registerClient(app.issuer, { client_name: 'Loopback client', redirect_uris: [LOOP_CB] });
  intruder = await registerClient(app.issuer, { client_name: 'Intruder', redirect_uris: ['https://evil.example/cb'] });
  userJar = new CookieJar();
});
afterAll(() => app?.close());

// ---------------------------------------------------------------------------------------------
// helpers

async function count(table: 'clients' | 'oidc_payloads'): Promise<number> {
  const row = await app.db
    .selectFrom(table)
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/** Rows in `clients` and `oidc_payloads` (by model), to prove a refused request changed nothing. */
async function snapshot() {
  const payloads = await app.db
    .selectFrom('oidc_payloads')
    .select(['model', sql<string>`count(*)`.as('n'), sql<string>`count(consumed_at)`.as('consumed')])
    .groupBy('model')
    .orderBy('model')
    .execute();
  return { clients: await count('clients'), payloads: payloads.map((p) => `${p.model}:${p.n}:${p.consumed}`).join(',') };
}

function authorizeUrl(client: Record<string, any>, params: Record<string, string | undefined> = {}, extra: Array<[string, string]> = []) {
  const url = authorizationUrl(app.issuer, {
    client_id: client.client_id,
    response_type: 'code',
    redirect_uri: client.redirect_uris[0],
    state: 'st',
    resource: RESOURCE,
    ...params,
  });
  for (const [k, v] of extra) url.searchParams.append(k, v);
  return url;
}

async function firstResponse(url: URL) {
  const response = await fetch(url, { redirect: 'manual' });
  const location = response.headers.get('location');
  return { response, status: response.status, location: location ? new URL(location, app.issuer) : undefined, body: await response.text() };
}

/** A fresh code for `client` (default: the web client) through the shared, signed-in browser. */
async function codeFor(client = web, params: Record<string, string | undefined> = {}) {
  const { verifier, challenge } = pkcePair();
  const { callback } = await authorizeInBrowser(authorizeUrl(client, { code_challenge: challenge, code_challenge_method: 'S256', ...params }), { jar: userJar });
  const code = callback.searchParams.get('code');
  if (!code) throw new Error(`no code: ${callback}`);
  return { code, verifier };
}

function exchange(client: Record<string, any>, code: string, verifier: string | undefined, extra: Record<string, string | string[] | undefined> = {}) {
  const params: Record<string, string | string[]> = {
    grant_type: 'authorization_code',
    code,
    redirect_uri: client.redirect_uris[0],
    client_id: client.client_id,
    resource: RESOURCE,
  };
  if (verifier !== undefined) params.code_verifier = verifier;
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete params[k];
    else params[k] = v;
  }
  return tokenRequest(app.issuer, params);
}

async function tokensFor(client = web) {
  const { code, verifier } = await codeFor(client);
  const r = await exchange(client, code, verifier);
  expect(r.status).toBe(200);
  return r.body as { access_token: string; refresh_token: string };
}

function register(body: string, headers: Record<string, string> = {}) {
  return fetch(`${app.issuer}/register`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
}

function expectFramingHeaders(response: Response, what: string) {
  expect(response.headers.get('x-frame-options'), what).toBe('DENY');
  expect(response.headers.get('content-security-policy') ?? '', what).toMatch(/frame-ancestors 'none'/);
  expect(response.headers.get('cache-control') ?? '', what).toMatch(/no-store/);
}

// ---------------------------------------------------------------------------------------------

describe('PKCE at /authorize', () => {
  const { verifier, challenge } = pkcePair();
  test.each([
    ['omitted code_challenge', {}, /PKCE|code_challenge/],
    ['the plain method', { code_challenge: verifier, code_challenge_method: 'plain' }, /.+/],
    ['plain by default (challenge without method)', { code_challenge: challenge }, /.+/],
    ['an unknown method', { code_challenge: challenge, code_challenge_method: 'S512' }, /.+/],
    ['a lower-case method', { code_challenge: challenge, code_challenge_method: 's256' }, /.+/],
    ['a verifier instead of a challenge (no challenge)', { code_verifier: verifier }, /PKCE|code_challenge/],
    ['an empty challenge', { code_challenge: '', code_challenge_method: 'S256' }, /.+/],
    ['a challenge with illegal characters', { code_challenge: `${challenge.slice(0, 40)}+/=`, code_challenge_method: 'S256' }, /.+/],
  ] as const)('%s → invalid_request redirected to the registered URI, nothing stored', async (_name, params, description) => {
    const before = await snapshot();
    const r = await firstResponse(authorizeUrl(web, params as Record<string, string>));
    expect(r.status).toBe(303);
    expect(`${r.location!.origin}${r.location!.pathname}`).toBe(WEB_CB);
    expect(r.location!.searchParams.get('error')).toBe('invalid_request');
    expect(r.location!.searchParams.get('error_description')).toMatch(description);
    expect(r.location!.searchParams.get('iss')).toBe(app.issuer);
    expect(r.location!.searchParams.get('state')).toBe('st');
    expect(await snapshot()).toEqual(before);
  });
});

describe('PKCE at /token', () => {
  const verifierCases: Array<[string, () => string | undefined, 'invalid_grant' | 'invalid_request']> = [
    // A well-formed verifier that does not match is invalid_grant; one that breaks RFC 7636 §4.1's
    // grammar (43–128 unreserved characters) is refused earlier as invalid_request.
    ['a wrong verifier', () => pkcePair().verifier, 'invalid_grant'],
    ['no verifier', () => undefined, 'invalid_grant'],
    ['an empty verifier', () => '', 'invalid_grant'],
    ['the challenge sent as the verifier', () => 'CHALLENGE', 'invalid_grant'],
    ['a verifier of 42 characters', () => 'a'.repeat(42), 'invalid_request'],
    ['a verifier of 129 characters', () => 'a'.repeat(129), 'invalid_request'],
    ['a verifier with + / =', () => `${randomBytes(32).toString('base64')}`, 'invalid_request'],
    ['a verifier with a space', () => `${'a'.repeat(30)} ${'b'.repeat(20)}`, 'invalid_request'],
    ['a verifier with a NUL byte', () => `${'a'.repeat(30)}\u0000${'b'.repeat(20)}`, 'invalid_request'],
    ['a verifier with non-ASCII', () => `${'a'.repeat(43)}é`, 'invalid_request'],
  ];
  test.each(verifierCases)('%s → 400 %s, nothing changed, and the code still works', async (_name, makeVerifier, error) => {
    const { verifier: realVerifier, challenge } = pkcePair();
    const { callback } = await authorizeInBrowser(authorizeUrl(web, { code_challenge: challenge, code_challenge_method: 'S256' }), { jar: userJar });
    const code = callback.searchParams.get('code')!;
    const bad = makeVerifier();
    const before = await snapshot();
    const r = await exchange(web, code, bad === 'CHALLENGE' ? challenge : bad);
    expect(r.status).toBe(400);
    expect(r.body.error).toBe(error);
    expect(r.headers.get('cache-control')).toBe('no-store');
    expect(await snapshot()).toEqual(before);
    expect((await exchange(web, code, realVerifier)).status).toBe(200);
  });
});

describe('authorization codes', () => {
  test('a replayed code → 400 invalid_grant, and the tokens it produced are revoked', async () => {
    const { code, verifier } = await codeFor();
    const first = await exchange(web, code, verifier);
    expect(first.status).toBe(200);
    const clients = await count('clients');
    const replay = await exchange(web, code, verifier);
    expect(replay.status).toBe(400);
    expect(replay.body.error).toBe('invalid_grant');
    expect(await count('clients')).toBe(clients);
    const refresh = await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: first.body.refresh_token, client_id: web.client_id });
    expect(refresh.status).toBe(400);
    expect(refresh.body.error).toBe('invalid_grant');
  });

  test.each([
    ['by another public client, with its own redirect_uri', 'invalid_grant', 400, () => ({ client_id: intruder.client_id, redirect_uri: intruder.redirect_uris[0] })],
    ['by another public client, with the victim redirect_uri', 'invalid_grant', 400, () => ({ client_id: intruder.client_id })],
    ['by an unknown client', 'invalid_client', 401, () => ({ client_id: 'no-such-client' })],
    ['with no client_id at all', 'invalid_request', 400, () => ({ client_id: undefined })],
    ['with another registered-looking redirect_uri', 'invalid_grant', 400, () => ({ redirect_uri: 'https://app.example.com/cb/' })],
    ['with the redirect_uri in another case', 'invalid_grant', 400, () => ({ redirect_uri: 'https://app.example.com/CB' })],
    ['with a mangled code', 'invalid_grant', 400, () => ({ code: 'x' })],
    ['with no code', 'invalid_request', 400, () => ({ code: undefined })],
    ['with the code twice (parameter pollution)', 'invalid_request', 400, () => ({ code: ['A', 'B'] })],
    ['with an unsupported grant_type', 'unsupported_grant_type', 400, () => ({ grant_type: 'password' })],
    ['with the implicit-style grant_type token', 'unsupported_grant_type', 400, () => ({ grant_type: 'token' })],
    ['with client_credentials', 'unsupported_grant_type', 400, () => ({ grant_type: 'client_credentials' })],
  ] as const)('redeemed %s → %s (%i), nothing changed, and the code still works for its client', async (_name, error, status, mutate) => {
    const { code, verifier } = await codeFor();
    const before = await snapshot();
    const r = await exchange(web, code, verifier, mutate());
    expect(r.status).toBe(status);
    expect(r.body.error).toBe(error);
    expect(await snapshot()).toEqual(before);
    expect((await exchange(web, code, verifier)).status).toBe(200);
  });

  test('omitting redirect_uri at /token is accepted only because the client has exactly one (oidc-provider fills it in)', async () => {
    const { code, verifier } = await codeFor();
    const r = await exchange(web, code, verifier, { redirect_uri: undefined });
    expect(r.status).toBe(200);
  });

  test('a client with two redirect URIs must name one at /token: omitting it → 400 invalid_request, nothing changed', async () => {
    const two = await registerClient(app.issuer, { client_name: 'Two URIs', redirect_uris: [WEB_CB, 'https://app.example.com/cb2'] });
    const { code, verifier } = await codeFor(two);
    const before = await snapshot();
    const r = await exchange(two, code, verifier, { redirect_uri: undefined });
    expect(r.status).toBe(400);
    expect(r.body.error).toBe('invalid_request');
    expect(await snapshot()).toEqual(before);
    const wrong = await exchange(two, code, verifier, { redirect_uri: 'https://app.example.com/cb2' });
    expect(wrong.status).toBe(400);
    expect(wrong.body.error).toBe('invalid_grant');
    expect(await snapshot()).toEqual(before);
    expect((await exchange(two, code, verifier)).status).toBe(200);
  });
});

describe('redirect_uri at /authorize: no redirect to anything unregistered', () => {
  const webCases: Array<[string, string]> = [
    ['path in another case', 'https://app.example.com/CB'],
    ['host in another case', 'https://APP.example.com/cb'],
    ['trailing slash', 'https://app.example.com/cb/'],
    ['extra query', 'https://app.example.com/cb?x=1'],
    ['empty query', 'https://app.example.com/cb?'],
    ['fragment', 'https://app.example.com/cb#frag'],
    ['userinfo', 'https://user@app.example.com/cb'],
    ['userinfo with password', 'https://user:pw@app.example.com/cb'],
    ['another port', 'https://app.example.com:8443/cb'],
    ['explicit default port', 'https://app.example.com:443/cb'],
    ['http downgrade', 'http://app.example.com/cb'],
    ['protocol-relative', '//evil.com'],
    ['protocol-relative with path', '//evil.com/cb'],
    ['another host', 'https://evil.com/cb'],
    ['suffix host', 'https://app.example.com.evil.com/cb'],
    ['userinfo trick', 'https://app.example.com@evil.com/cb'],
    ['encoded @', 'https://app.example.com%40evil.com/cb'],
    ['encoded slash before @', 'https://app.example.com%2F@evil.com/cb'],
    ['backslash trick', 'https://app.example.com\\@evil.com/cb'],
    ['backslash scheme', 'https:\\\\evil.com/cb'],
    ['dot-segment escape', 'https://app.example.com/cb/../evil'],
    ['encoded dot-segment', 'https://app.example.com/cb%2F..%2Fevil'],
    ['percent-encoded path character', 'https://app.example.com/c%62'],
    ['double-encoded URI', 'https%3A%2F%2Fevil.com%2Fcb'],
    ['registered URI as a query of the attacker', 'https://evil.com/?https://app.example.com/cb'],
    ['registered URI as the path of the attacker', 'https://evil.com/https://app.example.com/cb'],
    ['trailing space', 'https://app.example.com/cb '],
    ['trailing NUL', 'https://app.example.com/cb\u0000'],
    ['CR LF header injection', 'https://app.example.com/cb\r\nLocation: https://evil.com'],
    ['javascript:', 'javascript:alert(1)//https://app.example.com/cb'],
    ['data:', 'data:text/html,<script>alert(1)</script>'],
    ['relative path', '/cb'],
    ['trailing dot in host', 'https://app.example.com./cb'],
    ['IDN homograph', 'https://аpp.example.com/cb'],
  ];
  const loopCases: Array<[string, string]> = [
    ['path in another case', 'http://127.0.0.1:5555/CB'],
    ['trailing slash', 'http://127.0.0.1:5555/cb/'],
    ['extra query', 'http://127.0.0.1:5555/cb?x=1'],
    ['fragment', 'http://127.0.0.1:5555/cb#f'],
    ['userinfo', 'http://user@127.0.0.1:5555/cb'],
    ['https instead of http', 'https://127.0.0.1:5555/cb'],
    ['another loopback address', 'http://127.0.0.2:5555/cb'],
    ['localhost for 127.0.0.1', 'http://localhost:5555/cb'],
    ['IPv6 loopback for 127.0.0.1', 'http://[::1]:5555/cb'],
    ['suffix host', 'http://127.0.0.1.evil.com:5555/cb'],
    ['userinfo trick', 'http://127.0.0.1:5555@evil.com/cb'],
    ['decimal IP', 'http://2130706433:5555/cb'],
    ['another path on another port', 'http://127.0.0.1:6666/other'],
  ];
  test.each([...webCases.map(([n, u]) => ['web', n, u] as const), ...loopCases.map(([n, u]) => ['loopback', n, u] as const)])(
    '%s client, %s (%s) → 400 error page, no Location, nothing stored',
    async (kind, _name, redirectUri) => {
      const client = kind === 'web' ? web : loop;
      const { challenge } = pkcePair();
      const before = await snapshot();
      const r = await firstResponse(authorizeUrl(client, { redirect_uri: redirectUri, code_challenge: challenge, code_challenge_method: 'S256' }));
      expect(r.status).toBe(400);
      expect(r.location).toBeUndefined();
      // A NUL never reaches oidc-provider: the hostile-input guard answers invalid_request (I-37).
      expect(r.body).toContain(redirectUri.includes('\u0000') ? 'invalid_request' : 'invalid_redirect_uri');
      expect(r.body).not.toContain('evil.com/cb"');
      expectFramingHeaders(r.response, 'error page');
      expect(await snapshot()).toEqual(before);
    },
  );

  test('control: a loopback client may use any port (RFC 8252 §7.3), and only its registered path', async () => {
    const { challenge } = pkcePair();
    const r = await firstResponse(authorizeUrl(loop, { redirect_uri: 'http://127.0.0.1:6666/cb', code_challenge: challenge, code_challenge_method: 'S256' }));
    expect(r.status).toBe(303);
    expect(r.location!.origin).toBe(app.issuer);
    expect(r.location!.pathname).toMatch(/^\/interaction\//);
  });

  test('an empty redirect_uri counts as absent: the single registered URI is used, never another', async () => {
    const { challenge } = pkcePair();
    const r = await firstResponse(authorizeUrl(web, { redirect_uri: '', code_challenge: challenge, code_challenge_method: 'S256' }));
    expect(r.status).toBe(303);
    expect(r.location!.origin).toBe(app.issuer);
    expect(r.location!.pathname).toMatch(/^\/interaction\//);
  });

  test('an unknown client_id → 400 invalid_client page, not a redirect to the offered URI', async () => {
    const before = await snapshot();
    const r = await firstResponse(authorizeUrl({ client_id: 'https-evil', redirect_uris: ['https://evil.com/cb'] }, { code_challenge: pkcePair().challenge, code_challenge_method: 'S256' }));
    expect(r.status).toBe(400);
    expect(r.location).toBeUndefined();
    expect(r.body).toContain('invalid_client');
    expect(await snapshot()).toEqual(before);
  });
});

describe('resource indicators', () => {
  const atAuthorize: Array<[string, Array<[string, string]>]> = [
    ['an unknown resource', [['resource', 'https://unknown.example.com']]],
    ['a relative resource', [['resource', '/mcp']]],
    ['a resource without scheme', [['resource', 'mcp.example.com']]],
    ['a resource with a fragment', [['resource', 'https://mcp.example.com#frag']]],
    ['a non-URI resource', [['resource', 'not a uri']]],
    ['a URN resource', [['resource', 'urn:example:mcp']]],
    ['a javascript: resource', [['resource', 'javascript:alert(1)']]],
    ['a resource with userinfo', [['resource', 'https://user@mcp.example.com']]],
    ['a lookalike resource', [['resource', 'https://mcp.example.com.evil.com']]],
    ['two different resources', [['resource', RESOURCE], ['resource', OTHER_RESOURCE]]],
  ];
  test.each(atAuthorize)('/authorize with %s → invalid_target at the registered URI, nothing stored', async (_name, resources) => {
    const { challenge } = pkcePair();
    const before = await snapshot();
    const r = await firstResponse(authorizeUrl(web, { resource: undefined, code_challenge: challenge, code_challenge_method: 'S256' }, resources));
    expect(r.status).toBe(303);
    expect(`${r.location!.origin}${r.location!.pathname}`).toBe(WEB_CB);
    expect(r.location!.searchParams.get('error')).toBe('invalid_target');
    expect(r.location!.searchParams.get('iss')).toBe(app.issuer);
    expect(await snapshot()).toEqual(before);
  });

  const atToken: Array<[string, string | string[]]> = [
    ['the other registered resource', OTHER_RESOURCE],
    ['an unknown resource', 'https://unknown.example.com'],
    ['a relative resource', '/mcp'],
    ['a resource with a fragment', 'https://mcp.example.com#frag'],
    ['a non-URI resource', 'not a uri'],
    ['two different resources', [RESOURCE, OTHER_RESOURCE]],
  ];
  test.each(atToken)('/token (code) with %s → invalid_target, nothing changed, code still good', async (_name, resource) => {
    const { code, verifier } = await codeFor();
    const before = await snapshot();
    const r = await exchange(web, code, verifier, { resource });
    expect(r.status).toBe(400);
    expect(r.body.error).toBe('invalid_target');
    expect(await snapshot()).toEqual(before);
    expect((await exchange(web, code, verifier)).status).toBe(200);
  });

  test.each(atToken)('/token (refresh) with %s → invalid_target, nothing changed, token still good', async (_name, resource) => {
    const tokens = await tokensFor();
    const before = await snapshot();
    const r = await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token, client_id: web.client_id, resource });
    expect(r.status).toBe(400);
    expect(r.body.error).toBe('invalid_target');
    expect(await snapshot()).toEqual(before);
    expect((await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token, client_id: web.client_id })).status).toBe(200);
  });
});

describe('refresh tokens', () => {
  test('replaying a rotated refresh token → invalid_grant, and the newer one is revoked too', async () => {
    const tokens = await tokensFor();
    const once = await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token, client_id: web.client_id });
    expect(once.status).toBe(200);
    // The successor is used: the client got it, so the old token is no retry within the rotation grace.
    const rotated = await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: once.body.refresh_token, client_id: web.client_id });
    expect(rotated.status).toBe(200);
    const clients = await count('clients');
    const replay = await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token, client_id: web.client_id });
    expect(replay.status).toBe(400);
    expect(replay.body.error).toBe('invalid_grant');
    const newer = await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: rotated.body.refresh_token, client_id: web.client_id });
    expect(newer.status).toBe(400);
    expect(newer.body.error).toBe('invalid_grant');
    expect(await count('clients')).toBe(clients);
  });

  test.each([
    ['another client', () => ({ client_id: intruder.client_id })],
    ['a mangled token', (t: string) => ({ refresh_token: `${t}x` })],
    ['the access token as refresh token', (_t: string, a: string) => ({ refresh_token: a })],
    ['no refresh_token', () => ({ refresh_token: undefined })],
  ] as const)('a refresh with %s is refused and changes nothing', async (_name, mutate) => {
    const tokens = await tokensFor();
    const before = await snapshot();
    const params: Record<string, string | string[]> = { grant_type: 'refresh_token', refresh_token: tokens.refresh_token, client_id: web.client_id };
    for (const [k, v] of Object.entries(mutate(tokens.refresh_token, tokens.access_token))) {
      if (v === undefined) delete params[k];
      else params[k] = v;
    }
    const r = await tokenRequest(app.issuer, params);
    expect(r.status).toBe(400);
    expect(r.body.error).toBe(params.refresh_token === undefined ? 'invalid_request' : 'invalid_grant');
    expect(await snapshot()).toEqual(before);
  });
});

describe('access tokens where they do not belong', () => {
  test('/register?access_token=<a real access token> is treated as anonymous registration (201, a new client)', async () => {
    const tokens = await tokensFor();
    const before = await count('clients');
    const r = await fetch(`${app.issuer}/register?access_token=${encodeURIComponent(tokens.access_token)}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ client_name: 'Query token', redirect_uris: [WEB_CB] }),
    });
    expect(r.status).toBe(201);
    expect(await count('clients')).toBe(before + 1);
  });

  test('the admin API refuses a personal API token in the query string (401) and changes nothing', async () => {
    const created = await browse(admin.jar, `${app.adminUrl}/api/v1/tokens`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin: app.adminUrl, 'x-csrf-token': admin.csrf },
      body: JSON.stringify({ name: 'hostile' }),
    });
    expect(created.status).toBe(201);
    const { token } = (await created.json()) as { token: string };
    const before = await snapshot();
    const r = await fetch(`${app.adminUrl}/api/v1/clients?access_token=${encodeURIComponent(token)}`);
    expect(r.status).toBe(401);
    const form = await fetch(`${app.adminUrl}/api/v1/clients/${encodeURIComponent(web.client_id)}/suspend`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: formBody({ access_token: token }),
    });
    expect(form.status).toBe(401);
    expect(await snapshot()).toEqual(before);
    // control: the same token as a Bearer header works
    expect((await fetch(`${app.adminUrl}/api/v1/clients`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
  });
});

describe('/register with hostile input', () => {
  const ok = { client_name: 'X', redirect_uris: [WEB_CB] };
  const refused: Array<[string, () => string, number, string]> = [
    ['malformed JSON', () => '{"client_name": "x", "redirect_uris": [', 400, 'invalid_request'],
    ['a JSON array body', () => '[]', 400, 'invalid_request'],
    ['a JSON string body', () => '"hello"', 400, 'invalid_request'],
    ['an oversized body (17 KiB)', () => JSON.stringify({ ...ok, software_id: 'a'.repeat(17 * 1024) }), 413, 'invalid_request'],
    ['10000 levels of nesting', () => `${'['.repeat(10000)}${']'.repeat(10000)}`, 413, 'invalid_request'],
    ['8000 levels of nesting in client_name', () => `{"redirect_uris":["${WEB_CB}"],"client_name":${'['.repeat(8000)}${']'.repeat(8000)}}`, 400, 'invalid_client_metadata'],
    ['client_name as an array', () => JSON.stringify({ ...ok, client_name: ['x'] }), 400, 'invalid_client_metadata'],
    ['client_name as an object', () => JSON.stringify({ ...ok, client_name: { $ne: null } }), 400, 'invalid_client_metadata'],
    ['redirect_uris as a string', () => JSON.stringify({ ...ok, redirect_uris: WEB_CB }), 400, 'invalid_redirect_uri'],
    ['redirect_uris with a nested array', () => JSON.stringify({ ...ok, redirect_uris: [[WEB_CB]] }), 400, 'invalid_redirect_uri'],
    ['redirect_uris with a number', () => JSON.stringify({ ...ok, redirect_uris: [123] }), 400, 'invalid_redirect_uri'],
    ['redirect_uris empty', () => JSON.stringify({ ...ok, redirect_uris: [] }), 400, 'invalid_redirect_uri'],
    ['token_endpoint_auth_method as an array', () => JSON.stringify({ ...ok, token_endpoint_auth_method: ['none'] }), 400, 'invalid_client_metadata'],
    ['logo_uri as an array', () => JSON.stringify({ ...ok, logo_uri: ['https://app.example.com/l.png'] }), 400, 'invalid_client_metadata'],
    ['client_uri as an object', () => JSON.stringify({ ...ok, client_uri: {} }), 400, 'invalid_client_metadata'],
    ['grant_types as a string', () => JSON.stringify({ ...ok, grant_types: 'authorization_code' }), 400, 'invalid_client_metadata'],
    ['contacts as a string', () => JSON.stringify({ ...ok, contacts: 'a@example.com' }), 400, 'invalid_client_metadata'],
    ['a NUL byte in client_name', () => JSON.stringify({ ...ok, client_name: 'evil\u0000name' }), 400, 'invalid_client_metadata'],
    ['CR/LF in client_name', () => JSON.stringify({ ...ok, client_name: 'evil\r\nSet-Cookie: x=y' }), 400, 'invalid_client_metadata'],
    ['a tab in client_name', () => JSON.stringify({ ...ok, client_name: 'evil\tname' }), 400, 'invalid_client_metadata'],
    ['an escape sequence in client_name', () => JSON.stringify({ ...ok, client_name: 'evil\u001b[31mred' }), 400, 'invalid_client_metadata'],
    ['a 201-character client_name', () => JSON.stringify({ ...ok, client_name: 'a'.repeat(201) }), 400, 'invalid_client_metadata'],
    // Refused by the hostile-input guard before any field is looked at (I-37).
    ['a NUL byte in a redirect URI', () => JSON.stringify({ ...ok, redirect_uris: ['https://app.example.com/cb\u0000'] }), 400, 'invalid_client_metadata'],
    ['CR/LF in a redirect URI', () => JSON.stringify({ ...ok, redirect_uris: ['https://app.example.com/cb\r\nLocation: https://evil.com'] }), 400, 'invalid_redirect_uri'],
    ['a fragment in a redirect URI', () => JSON.stringify({ ...ok, redirect_uris: ['https://app.example.com/cb#x'] }), 400, 'invalid_redirect_uri'],
    ['credentials in a redirect URI', () => JSON.stringify({ ...ok, redirect_uris: ['https://u:p@app.example.com/cb'] }), 400, 'invalid_redirect_uri'],
    ['a javascript: redirect URI', () => JSON.stringify({ ...ok, redirect_uris: ['javascript:alert(1)'] }), 400, 'invalid_redirect_uri'],
    ['a data: redirect URI', () => JSON.stringify({ ...ok, redirect_uris: ['data:text/html,<script>alert(1)</script>'] }), 400, 'invalid_redirect_uri'],
    ['a file: redirect URI', () => JSON.stringify({ ...ok, redirect_uris: ['file:///etc/passwd'] }), 400, 'invalid_redirect_uri'],
    ['a plain-http non-loopback redirect URI', () => JSON.stringify({ ...ok, redirect_uris: ['http://app.example.com/cb'] }), 400, 'invalid_redirect_uri'],
    ['a wildcard redirect URI', () => JSON.stringify({ ...ok, redirect_uris: ['https://*.example.com/cb'] }), 400, 'invalid_redirect_uri'],
    ['a 2001-character redirect URI', () => JSON.stringify({ ...ok, redirect_uris: [`https://app.example.com/${'a'.repeat(1977)}`] }), 400, 'invalid_redirect_uri'],
    ['eleven redirect URIs', () => JSON.stringify({ ...ok, redirect_uris: Array.from({ length: 11 }, (_, i) => `https://app.example.com/cb${i}`) }), 400, 'invalid_redirect_uri'],
    ['a javascript: logo_uri', () => JSON.stringify({ ...ok, logo_uri: 'javascript:alert(1)' }), 400, 'invalid_client_metadata'],
    ['a data: logo_uri', () => JSON.stringify({ ...ok, logo_uri: 'data:image/svg+xml,<svg onload=alert(1)>' }), 400, 'invalid_client_metadata'],
  ];
  test.each(refused)('%s → %i %s, nothing stored', async (_name, body, status, error) => {
    const before = await snapshot();
    const r = await register(body());
    expect(r.status).toBe(status);
    expect(((await r.json()) as Record<string, unknown>).error).toBe(error);
    expect(await snapshot()).toEqual(before);
  });

  // Found by this suite (was a 500: PostgreSQL's jsonb rejects U+0000); now refused up front.
  test.each([
    ['logo_uri', { logo_uri: 'https://app.example.com/l.png\u0000' }],
    ['client_uri', { client_uri: 'https://app.example.com/\u0000' }],
    ['tos_uri', { tos_uri: 'https://app.example.com/tos\u0000' }],
    ['policy_uri', { policy_uri: 'https://app.example.com/policy\u0000' }],
    ['software_id', { software_id: 'a\u0000b' }],
    ['software_version', { software_version: '1\u00002' }],
  ] as const)('a NUL byte in %s → 400 invalid_client_metadata, nothing stored', async (_field, fields) => {
    const before = await snapshot();
    const r = await register(JSON.stringify({ ...ok, ...fields }));
    expect(await snapshot()).toEqual(before);
    expect(r.status).toBe(400);
    expect(((await r.json()) as Record<string, unknown>).error).toBe('invalid_client_metadata');
  });

  // Found by this suite (was stored verbatim: URL parsing drops CR/LF, so the value passed); now refused.
  test.each([
    ['client_uri', { client_uri: 'https://app.example.com/\r\nX: y' }],
    ['logo_uri', { logo_uri: 'https://app.example.com/l.png\r\nX: y' }],
    ['tos_uri', { tos_uri: 'https://app.example.com/tos\r\nX: y' }],
    ['policy_uri', { policy_uri: 'https://app.example.com/p\r\nX: y' }],
  ] as const)('CR/LF in %s → 400 invalid_client_metadata, nothing stored', async (_field, fields) => {
    const before = await snapshot();
    const r = await register(JSON.stringify({ ...ok, ...fields }));
    expect(r.status).toBe(400);
    expect(((await r.json()) as Record<string, unknown>).error).toBe('invalid_client_metadata');
    expect(await snapshot()).toEqual(before);
  });

  test('a body sent as a form instead of JSON → 400 invalid_request, nothing stored', async () => {
    const before = await snapshot();
    const r = await fetch(`${app.issuer}/register`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'client_name=x&redirect_uris=https%3A%2F%2Fapp.example.com%2Fcb' });
    expect(r.status).toBe(400);
    expect(((await r.json()) as Record<string, unknown>).error).toBe('invalid_request');
    expect(await snapshot()).toEqual(before);
  });

  const SQL = "'; DROP TABLE clients; --";
  test.each([
    ['client_name', { client_name: SQL }],
    ['client_uri', { client_uri: `https://app.example.com/?q=${encodeURIComponent(SQL)}` }],
    ['software_id', { software_id: SQL }],
    ['software_version', { software_version: `1.0${SQL}` }],
    ['scope', { scope: `files:read ${SQL.replace(/ /g, '')}` }],
    ['policy_uri', { policy_uri: `https://app.example.com/p?q=${encodeURIComponent(SQL)}` }],
    ['tos_uri', { tos_uri: `https://app.example.com/t?q=${encodeURIComponent(SQL)}` }],
    ['a redirect URI query', { redirect_uris: [`https://app.example.com/cb?q=${encodeURIComponent(SQL)}`] }],
  ] as const)('SQL metacharacters in %s are stored as data: 201, one new row, tables intact', async (_field, fields) => {
    const before = await count('clients');
    const r = await register(JSON.stringify({ ...ok, ...fields }));
    expect(r.status).toBe(201);
    const body = (await r.json()) as Record<string, any>;
    expect(await count('clients')).toBe(before + 1);
    const row = await app.db.selectFrom('clients').selectAll().where('client_id', '=', body.client_id).executeTakeFirstOrThrow();
    if ('client_name' in fields) expect(row.metadata).toMatchObject({ client_name: SQL });
  });
});

describe('HTML injection in client metadata is escaped everywhere it is shown', () => {
  const NAME = '<script>alert(1)</script><img src=x onerror=alert(2)>';
  const LOGO = 'https://app.example.com/logo.png?"><script>alert(3)</script>';
  let evil: Record<string, any>;
  beforeAll(async () => {
    const r = await register(JSON.stringify({ client_name: NAME, logo_uri: LOGO, client_uri: 'https://app.example.com/"onmouseover="alert(4)', redirect_uris: [WEB_CB] }));
    expect(r.status).toBe(201);
    evil = (await r.json()) as Record<string, any>;
  });

  test('the consent page shows the name escaped', async () => {
    const jar = new CookieJar();
    const { challenge } = pkcePair();
    let page = await browse(jar, authorizeUrl(evil, { code_challenge: challenge, code_challenge_method: 'S256' }));
    for (let i = 0; i < 5 && page.status === 303; i++) page = await browse(jar, new URL(page.headers.get('location')!, app.issuer));
    let html = await page.text();
    const action = /<form method="post" action="([^"]+)"/.exec(html)![1]!;
    page = await browse(jar, new URL(action, app.issuer), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: formBody({ csrf: csrfOf(html), email: 'alice@example.com', password: TEST_PASSWORD }),
    });
    for (let i = 0; i < 5 && page.status === 303; i++) page = await browse(jar, new URL(page.headers.get('location')!, app.issuer));
    expect(page.status).toBe(200);
    html = await page.text();
    expect(html).toMatch(/decision/);
    expect(html).toContain('&lt;script&gt;');
    expect(html).not.toContain('<script');
    expect(html).not.toContain('<img src=x');
    expect(html).not.toMatch(/"\s*onmouseover=/);
    expectFramingHeaders(page, 'consent page');
  });

  test('the admin console client page shows the name escaped', async () => {
    const page = await admin.get(`/clients/${encodeURIComponent(evil.client_id)}`);
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain('&lt;script&gt;');
    expect(html).not.toContain('<script');
    expect(html).not.toContain('<img src=x');
    expect(html).not.toMatch(/"\s*onmouseover=/);
    expectFramingHeaders(page, 'admin client page');
  });

  test('the admin console client list shows the name escaped', async () => {
    const page = await admin.get('/clients');
    const html = await page.text();
    expect(html).toContain('&lt;script&gt;');
    expect(html).not.toContain('<script');
  });
});

describe('CSRF', () => {
  async function atConsent() {
    // A fresh client each time: consent is remembered per client, and would skip the page.
    const fresh = await registerClient(app.issuer, { client_name: `CSRF target ${randomUUID()}`, redirect_uris: [LOOP_CB] });
    const jar = new CookieJar();
    const { challenge } = pkcePair();
    let page = await browse(jar, authorizeUrl(fresh, { code_challenge: challenge, code_challenge_method: 'S256' }));
    for (let i = 0; i < 5 && page.status === 303; i++) page = await browse(jar, new URL(page.headers.get('location')!, app.issuer));
    let html = await page.text();
    const login = /<form method="post" action="([^"]+)"/.exec(html)![1]!;
    page = await browse(jar, new URL(login, app.issuer), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: formBody({ csrf: csrfOf(html), email: 'alice@example.com', password: TEST_PASSWORD }),
    });
    for (let i = 0; i < 5 && page.status === 303; i++) page = await browse(jar, new URL(page.headers.get('location')!, app.issuer));
    html = await page.text();
    const action = /<form method="post" action="([^"]+)"/.exec(html)![1]!;
    expect(action).toMatch(/\/consent$/);
    return { jar, action, csrf: csrfOf(html) };
  }

  test.each([
    ['missing', () => undefined],
    ['empty', () => ''],
    ['wrong', () => 'wrong-token'],
    ['one character off', (c: string) => `${c.slice(0, -1)}${c.endsWith('A') ? 'B' : 'A'}`],
    ['another interaction\'s token', () => 'OTHER'],
  ] as const)('consent POST with a %s CSRF token → 403, no redirect, nothing changed', async (_name, csrfFor) => {
    const { jar, action, csrf } = await atConsent();
    let token = csrfFor(csrf);
    if (token === 'OTHER') token = (await atConsent()).csrf;
    const before = await snapshot();
    const fields: Record<string, string> = { decision: 'allow' };
    if (token !== undefined) fields.csrf = token;
    const r = await browse(jar, new URL(action, app.issuer), { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: formBody(fields) });
    expect(r.status).toBe(403);
    expect(r.headers.get('location')).toBeNull();
    expectFramingHeaders(r, 'consent CSRF error page');
    expect(await snapshot()).toEqual(before);
    // control: the right token still works
    const ok = await browse(jar, new URL(action, app.issuer), { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: formBody({ decision: 'allow', csrf }) });
    expect(ok.status).toBe(303);
  });

  test.each([
    ['missing', '', {}],
    ['wrong', 'wrong-token', {}],
    ['valid but cross-origin', undefined, { origin: 'https://evil.example.com' }],
  ] as const)('admin suspend form with a %s CSRF token → 403, client unchanged', async (_name, csrf, headers) => {
    const before = await snapshot();
    const status = (await app.clients.get(web.client_id))?.status;
    const r = await admin.post(`/clients/${encodeURIComponent(web.client_id)}/suspend`, {}, { ...(csrf === undefined ? {} : { csrf }), headers });
    expect(r.status).toBe(403);
    expect((await app.clients.get(web.client_id))?.status).toBe(status);
    expect(await snapshot()).toEqual(before);
  });
});

describe('framing and caching headers', () => {
  test.each([
    ['the login page', async () => {
      const jar = new CookieJar();
      let page = await browse(jar, authorizeUrl(loop, { code_challenge: pkcePair().challenge, code_challenge_method: 'S256' }));
      for (let i = 0; i < 5 && page.status === 303; i++) page = await browse(jar, new URL(page.headers.get('location')!, app.issuer));
      return page;
    }],
    ['the /authorize error page', () => fetch(authorizeUrl(web, { redirect_uri: 'https://evil.com/cb' }), { redirect: 'manual' })],
    ['an unknown interaction', () => fetch(`${app.issuer}/interaction/nope`, { redirect: 'manual' })],
    ['the admin sign-in page', () => fetch(`${app.adminUrl}/sign-in`, { redirect: 'manual' })],
    ['the admin pending page', () => admin.get('/pending')],
  ] as const)('%s is HTML with X-Frame-Options DENY, frame-ancestors none, no-store', async (_name, load) => {
    const page = await load();
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    expectFramingHeaders(page, _name);
  });

  test('token responses (success and error) and registration responses are no-store', async () => {
    const { code, verifier } = await codeFor();
    const bad = await exchange(web, code, pkcePair().verifier);
    expect(bad.headers.get('cache-control')).toBe('no-store');
    const good = await exchange(web, code, verifier);
    expect(good.status).toBe(200);
    expect(good.headers.get('cache-control')).toBe('no-store');
    const reg = await register(JSON.stringify({ client_name: 'headers', redirect_uris: [WEB_CB] }));
    expect(reg.headers.get('cache-control')).toMatch(/no-store/);
  });
});

describe('session fixation', () => {
  // oidc-provider's session cookie is gh_session (+ gh_session.sig, signed with the cookie keys). It
  // is only created when an interaction finishes, and a new id is issued every time one finishes.
  const sessionCookie = (jar: CookieJar) => jar.header(new URL(app.issuer)).split('; ').find((c) => c.startsWith('gh_session='));
  const plant = (jar: CookieJar, cookies: string[]) => jar.store(new Response(null, { headers: cookies.map((c) => ['set-cookie', `${c}; Path=/`] as [string, string]) }));
  beforeAll(async () => {
    await app.accounts.create('bob@example.com', TEST_PASSWORD);
  });

  test('a forged, unsigned gh_session planted before sign-in is not the one in use after sign-in', async () => {
    const victim = new CookieJar();
    plant(victim, ['gh_session=attacker-chosen-session-id']);
    const { callback } = await authorizeInBrowser(authorizeUrl(loop, { code_challenge: pkcePair().challenge, code_challenge_method: 'S256' }), { jar: victim, email: 'bob@example.com' });
    expect(callback.searchParams.get('code')).toBeTruthy();
    expect(sessionCookie(victim)).toBeDefined();
    expect(sessionCookie(victim)).not.toBe('gh_session=attacker-chosen-session-id');
  });

  test("the attacker's own signed session, planted, is rotated once the victim's interaction finishes, and the planted id is dead", async () => {
    const attacker = new CookieJar();
    await authorizeInBrowser(authorizeUrl(loop, { code_challenge: pkcePair().challenge, code_challenge_method: 'S256' }), { jar: attacker });
    const planted = attacker.header(new URL(app.issuer)).split('; ').filter((c) => c.startsWith('gh_session'));
    expect(planted).toHaveLength(2);

    const victim = new CookieJar();
    plant(victim, planted);
    const { callback } = await authorizeInBrowser(authorizeUrl(loop, { code_challenge: pkcePair().challenge, code_challenge_method: 'S256' }), { jar: victim });
    expect(callback.searchParams.get('code')).toBeTruthy();
    expect(sessionCookie(victim)).toBeDefined();
    expect(sessionCookie(victim)).not.toBe(planted[0]);

    // The planted id no longer opens a session: whoever holds it must sign in again.
    const replay = new CookieJar();
    plant(replay, planted);
    const { pages } = await authorizeInBrowser(authorizeUrl(loop, { code_challenge: pkcePair().challenge, code_challenge_method: 'S256' }), { jar: replay });
    expect(pages.some((p) => /\/login"/.test(p))).toBe(true);
  });

  test('signing in as another account (prompt=login) ends the first account\'s session: the code is for the new account', async () => {
    const jar = new CookieJar();
    await authorizeInBrowser(authorizeUrl(loop, { code_challenge: pkcePair().challenge, code_challenge_method: 'S256' }), { jar });
    const alicesSession = sessionCookie(jar);
    const alicesCookies = jar.header(new URL(app.issuer)).split('; ').filter((c) => c.startsWith('gh_session'));
    expect(alicesCookies).toHaveLength(2);

    const { verifier, challenge } = pkcePair();
    const { callback, pages } = await authorizeInBrowser(
      authorizeUrl(loop, { code_challenge: challenge, code_challenge_method: 'S256', prompt: 'login' }),
      { jar, email: 'bob@example.com' },
    );
    expect(pages.some((p) => /\/login"/.test(p))).toBe(true);
    const code = callback.searchParams.get('code');
    expect(code, String(callback)).toBeTruthy();
    const tokens = await exchange(loop, code!, verifier);
    expect(tokens.status).toBe(200);
    const bob = await app.db.selectFrom('accounts').select('id').where('email', '=', 'bob@example.com').executeTakeFirstOrThrow();
    expect(decodeJwt(tokens.body.access_token as string).sub).toBe(bob.id);
    // A new session id, and Alice's old one opens nothing any more.
    expect(sessionCookie(jar)).not.toBe(alicesSession);
    const replay = new CookieJar();
    plant(replay, alicesCookies);
    const again = await authorizeInBrowser(authorizeUrl(loop, { code_challenge: pkcePair().challenge, code_challenge_method: 'S256' }), { jar: replay });
    expect(again.pages.some((p) => /\/login"/.test(p))).toBe(true);
  });
});

describe('brute force', () => {
  test('the admin console locks an account after five failures: 429 with Retry-After', async () => {
    await createAdmin(app, 'brute@example.com');
    const jar = new CookieJar();
    const attempt = async (password: string) => {
      const page = await browse(jar, `${app.adminUrl}/sign-in`);
      return browse(jar, `${app.adminUrl}/sign-in`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', origin: app.adminUrl, 'x-forwarded-for': '198.51.100.77' },
        body: formBody({ csrf: csrfOf(await page.text()), email: 'brute@example.com', password }),
      });
    };
    for (let i = 0; i < 5; i++) expect((await attempt('wrong password!')).status).toBe(401);
    const locked = await attempt(ADMIN_PASSWORD);
    expect(locked.status).toBe(429);
    expect(Number(locked.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(locked.headers.get('set-cookie') ?? '').not.toMatch(/gh_admin=/);
  });

  test('user sign-in at /interaction locks the account out after five failures, even for the right password', async () => {
    const email = 'brute-forced@example.com';
    await app.accounts.create(email, 'the right long password');
    const client = await registerClient(app.issuer);
    const attempt = async (password: string) =>
      authorizeInBrowser(
        authorizationUrl(app.issuer, { client_id: client.client_id, response_type: 'code', redirect_uri: client.redirect_uris[0], code_challenge: pkcePair().challenge, code_challenge_method: 'S256', resource: RESOURCE }),
        { email, password },
      ).then(
        () => 'signed in',
        (error: Error) => error.message,
      );
    for (let i = 0; i < 5; i++) expect(await attempt('a wrong password!')).toMatch(/unexpected page 401/);
    const locked = await attempt('the right long password');
    expect(locked).toMatch(/unexpected page 429/);
  });
});
