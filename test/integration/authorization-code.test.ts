/**
 * The authorization code flow with PKCE (OAuth 2.1 §4.1, RFC 7636), exact redirect URIs
 * (RFC 9700 §2.1), single-use codes, `iss` on every response (RFC 9207) and audience binding
 * (RFC 8707).
 */
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { seed, startTestApp, type TestApp } from '../support/app.ts';
import {
  REDIRECT_URI,
  authorizationUrl,
  authorizeInBrowser,
  pkcePair,
  registerClient,
  tokenRequest,
} from '../support/oauth.ts';

let app: TestApp;
let client: Record<string, any>;
const RESOURCE = 'https://mcp.example.com';

beforeAll(async () => {
  app = await startTestApp();
  await seed(app);
  await app.resources.add({
    uri: 'https://other-mcp.example.com',
    name: 'Other MCP',
    scopes: [{ name: 'other:read', description: 'Read other things' }],
    accessTokenTtl: 300,
  });
  client = await registerClient(app.issuer);
});
afterAll(() => app?.close());

function authorize(params: Record<string, string | undefined>) {
  return authorizationUrl(app.issuer, {
    client_id: client.client_id,
    response_type: 'code',
    redirect_uri: REDIRECT_URI,
    state: 'st',
    resource: RESOURCE,
    ...params,
  });
}

/** The redirect Gatehouse answers an /authorize request with, before any page. */
async function firstRedirect(url: URL) {
  const response = await fetch(url, { redirect: 'manual' });
  return { status: response.status, location: response.headers.get('location') ? new URL(response.headers.get('location')!, app.issuer) : undefined, body: response.status === 200 || response.status === 400 ? await response.text() : '' };
}

async function codeFor(params: Record<string, string | undefined> = {}) {
  const { verifier, challenge } = pkcePair();
  const { callback } = await authorizeInBrowser(authorize({ code_challenge: challenge, code_challenge_method: 'S256', ...params }));
  const code = callback.searchParams.get('code');
  expect(code, String(callback)).toBeTruthy();
  return { code: code!, verifier, callback };
}

function exchange(code: string, verifier: string | undefined, extra: Record<string, string | string[]> = {}) {
  return tokenRequest(app.issuer, {
    grant_type: 'authorization_code',
    code,
    ...(verifier ? { code_verifier: verifier } : {}),
    redirect_uri: REDIRECT_URI,
    client_id: client.client_id,
    resource: RESOURCE,
    ...extra,
  });
}

describe('PKCE', () => {
  test('an authorization request without code_challenge is refused, with iss on the error', async () => {
    const r = await firstRedirect(authorize({}));
    expect(r.location?.origin + r.location!.pathname).toBe(REDIRECT_URI);
    expect(r.location!.searchParams.get('error')).toBe('invalid_request');
    expect(r.location!.searchParams.get('error_description')).toMatch(/PKCE/);
    expect(r.location!.searchParams.get('iss')).toBe(app.issuer);
    expect(r.location!.searchParams.get('state')).toBe('st');
  });

  test('the plain method is refused', async () => {
    const { verifier } = pkcePair();
    const r = await firstRedirect(authorize({ code_challenge: verifier, code_challenge_method: 'plain' }));
    expect(r.location!.searchParams.get('error')).toBe('invalid_request');
    expect(r.location!.searchParams.get('iss')).toBe(app.issuer);
  });

  test('a wrong or missing verifier is refused, and cannot burn the code for its rightful client', async () => {
    const { code, verifier } = await codeFor();
    const wrong = await exchange(code, pkcePair().verifier);
    expect(wrong.status).toBe(400);
    expect(wrong.body.error).toBe('invalid_grant');
    const missing = await exchange(code, undefined);
    expect(missing.status).toBe(400);
    expect(missing.body.error).toMatch(/invalid_(grant|request)/);
    // Whoever holds a stolen code without the verifier gains nothing, and cannot deny the real
    // client its token either: failed requests change nothing (db/unit-of-work.ts).
    const right = await exchange(code, verifier);
    expect(right.status).toBe(200);
  });
});

describe('redirect URIs', () => {
  test('an unregistered redirect URI gets an error page, never a redirect', async () => {
    const { challenge } = pkcePair();
    for (const redirect of ['https://evil.example/callback', 'http://127.0.0.1:53682/callback/x', 'http://127.0.0.1:53682/callbac', 'http://localhost:53682/callback']) {
      const r = await firstRedirect(authorize({ redirect_uri: redirect, code_challenge: challenge, code_challenge_method: 'S256' }));
      expect(r.status, redirect).toBe(400);
      expect(r.location).toBeUndefined();
      expect(r.body).toContain('invalid_redirect_uri');
    }
  });

  test('the redirect_uri at /token must equal the one used at /authorize', async () => {
    const { code, verifier } = await codeFor();
    const r = await exchange(code, verifier, { redirect_uri: 'http://127.0.0.1:53682/other' });
    expect(r.status).toBe(400);
    expect(r.body.error).toBe('invalid_grant');
  });

  test('an unknown client gets an error page', async () => {
    const r = await firstRedirect(authorize({ client_id: 'nope' }));
    expect(r.status).toBe(400);
    expect(r.body).toContain('invalid_client');
  });
});

describe('codes', () => {
  test('a code exchanges once; replaying it fails and revokes the tokens it produced', async () => {
    const { code, verifier } = await codeFor();
    const first = await exchange(code, verifier);
    expect(first.status).toBe(200);
    expect(first.headers.get('cache-control')).toBe('no-store');
    const replay = await exchange(code, verifier);
    expect(replay.status).toBe(400);
    expect(replay.body.error).toBe('invalid_grant');
    const refresh = await tokenRequest(app.issuer, {
      grant_type: 'refresh_token',
      refresh_token: first.body.refresh_token,
      client_id: client.client_id,
    });
    expect(refresh.body.error).toBe('invalid_grant');
  });

  test('two concurrent redemptions of one code yield exactly one success', async () => {
    const { code, verifier } = await codeFor();
    const results = await Promise.all([exchange(code, verifier), exchange(code, verifier), exchange(code, verifier)]);
    expect(results.map((r) => r.status).sort()).toEqual([200, 400, 400]);
    for (const r of results.filter((x) => x.status === 400)) expect(r.body.error).toBe('invalid_grant');
  });

  test('codes are made of unreserved characters and the state comes back byte for byte', async () => {
    const state = 'a+b/c=d%20e~f';
    const { callback } = await codeFor({ state });
    expect(callback.searchParams.get('state')).toBe(state);
    expect(callback.searchParams.get('code')).toMatch(/^[A-Za-z0-9._~-]+$/);
    expect(callback.searchParams.get('iss')).toBe(app.issuer);
  });
});

describe('resources and audience', () => {
  test('aud is the resource and scopes are the resource defaults when none are asked for', async () => {
    const { code, verifier } = await codeFor();
    const r = await exchange(code, verifier);
    const claims = decodeJwt(r.body.access_token);
    expect(claims.aud).toBe(RESOURCE);
    expect(claims.scope).toBe('files:read');
    expect(claims.client_id).toBe(client.client_id);
    expect(r.body.expires_in).toBe(600);
    expect(r.body.token_type).toBe('Bearer');
  });

  test('requested scopes are intersected with what the resource offers', async () => {
    const { code, verifier } = await codeFor({ scope: 'files:read files:write admin:all openid offline_access' });
    const r = await exchange(code, verifier);
    expect(String(decodeJwt(r.body.access_token).scope).split(' ').sort()).toEqual(['files:read', 'files:write']);
    expect(r.body.refresh_token).toBeTruthy();
  });

  test('each resource has its own token lifetime', async () => {
    const { code, verifier } = await codeFor({ resource: 'https://other-mcp.example.com' });
    const r = await exchange(code, verifier, { resource: 'https://other-mcp.example.com' });
    expect(r.status).toBe(200);
    expect(r.body.expires_in).toBe(300);
    expect(decodeJwt(r.body.access_token).aud).toBe('https://other-mcp.example.com');
  });

  test('an unknown resource is invalid_target at /authorize', async () => {
    const { challenge } = pkcePair();
    const r = await firstRedirect(authorize({ resource: 'https://unknown.example.com', code_challenge: challenge, code_challenge_method: 'S256' }));
    expect(r.location!.searchParams.get('error')).toBe('invalid_target');
    expect(r.location!.searchParams.get('iss')).toBe(app.issuer);
  });

  test('without resource, a server with several resources answers invalid_target', async () => {
    const { challenge } = pkcePair();
    const r = await firstRedirect(authorize({ resource: undefined, code_challenge: challenge, code_challenge_method: 'S256' }));
    expect(r.location!.searchParams.get('error')).toBe('invalid_target');
    expect(r.location!.searchParams.get('error_description')).toMatch(/resource/);
  });

  test('a resource at /token different from the one authorized is invalid_target', async () => {
    const { code, verifier } = await codeFor();
    const r = await exchange(code, verifier, { resource: 'https://other-mcp.example.com' });
    expect(r.status).toBe(400);
    expect(r.body.error).toBe('invalid_target');
    // The failed attempt did not consume the code: the right request still works.
    const ok = await exchange(code, verifier);
    expect(ok.status).toBe(200);
  });

  test('/token without resource uses the authorized one', async () => {
    const { code, verifier } = await codeFor();
    const r = await tokenRequest(app.issuer, {
      grant_type: 'authorization_code',
      code,
      code_verifier: verifier,
      redirect_uri: REDIRECT_URI,
      client_id: client.client_id,
    });
    expect(r.status).toBe(200);
    expect(decodeJwt(r.body.access_token).aud).toBe(RESOURCE);
  });
});
