/**
 * Hostile characters and oversized bodies (issue 15 §7, §8; docs/security.md I-37): U+0000 and
 * unpaired UTF-16 surrogates in every parameter an attacker reaches — /authorize, /register, /token,
 * both sign-in forms, the admin API's filters, ids and bodies — and bodies larger than their limit
 * sent chunked, without Content-Length, over a real socket.
 *
 * Each case asserts the exact status and RFC error, no 5xx, that nothing was stored, and that no
 * error-level line was logged (a refusal is not a failure).
 */
import { createHash } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { Writable } from 'node:stream';
import { sql } from 'kysely';
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { ADMIN_EMAIL, ADMIN_PASSWORD, createAdmin, csrfOf, formBody, signInAdmin, type AdminBrowser } from '../support/admin.ts';
import { seed, startTestApp, TEST_PASSWORD, type TestApp } from '../support/app.ts';
import { authorizationUrl, browse, CookieJar, pkcePair, registerClient } from '../support/oauth.ts';

const RESOURCE = 'https://mcp.example.com';
const CB = 'https://app.example.com/cb';
const NUL = '\u0000';
const LONE_HIGH = '\ud800';
const LONE_LOW = '\udc00';

let app: TestApp;
let admin: AdminBrowser;
let client: Record<string, any>;
const logs: string[] = [];

beforeAll(async () => {
  const destination = new Writable({
    write(chunk, _encoding, done) {
      logs.push(String(chunk));
      done();
    },
  });
  app = await startTestApp({ env: { GATEHOUSE_LOG_LEVEL: 'info' }, logDestination: destination });
  await seed(app, { uri: RESOURCE });
  await createAdmin(app);
  admin = await signInAdmin(app);
  // Approved on arrival (the test app's automatic approval): the refusals below are about the input.
  client = await registerClient(app.issuer, { client_name: 'Hostile-input client', redirect_uris: [CB] });
});
afterAll(() => app?.close());
beforeEach(() => {
  logs.length = 0;
});

// ---------------------------------------------------------------------------------------------
// helpers

/** Error- and fatal-level log lines (pino levels 50, 60) since the test began. */
const errorLines = () => logs.filter((line) => /"level":(50|60)/.test(line));

/** Everything a refused request might have written. */
async function snapshot() {
  const count = async (table: 'clients' | 'audit_events' | 'accounts' | 'sign_in_attempts' | 'admin_sessions') =>
    Number((await app.db.selectFrom(table).select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()).n);
  const payloads = await app.db
    .selectFrom('oidc_payloads')
    .select(['model', sql<string>`count(*)`.as('n')])
    .groupBy('model')
    .orderBy('model')
    .execute();
  return {
    clients: await count('clients'),
    audit: await count('audit_events'),
    accounts: await count('accounts'),
    attempts: await count('sign_in_attempts').catch(() => -1),
    sessions: await count('admin_sessions'),
    payloads: payloads.map((p) => `${p.model}:${p.n}`).join(','),
  };
}

async function tokenHits(clientId: string): Promise<number> {
  const key = `token-client:${createHash('sha256').update(clientId).digest('base64url')}`;
  const row = await app.db.selectFrom('rate_limit_counters').select('hits').where('key', '=', key).executeTakeFirst();
  return row ? Number(row.hits) : 0;
}

/** A raw query string, so the bytes on the wire are exactly these (URLSearchParams would re-encode). */
function authorizeWith(name: string, raw: string): string {
  const url = authorizationUrl(app.issuer, {
    client_id: client.client_id,
    response_type: 'code',
    redirect_uri: CB,
    code_challenge: pkcePair().challenge,
    code_challenge_method: 'S256',
    resource: RESOURCE,
    scope: 'files:read',
    state: 'st',
  });
  url.searchParams.delete(name);
  return `${url}&${name}=${raw}`;
}

interface Answer {
  status: number;
  text: string;
  json: Record<string, any> | undefined;
  location: string | null;
}

async function answer(response: Response): Promise<Answer> {
  const text = await response.text();
  let json: Record<string, any> | undefined;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, text, json, location: response.headers.get('location') };
}

/** A POST whose body is written in several chunks with no Content-Length (Transfer-Encoding: chunked). */
function postChunked(origin: string, path: string, headers: Record<string, string>, body: string, chunkSize = 4096): Promise<{ status: number; text: string; chunked: boolean }> {
  const target = new URL(path, origin);
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = httpRequest({ host: target.hostname, port: target.port, path: target.pathname + target.search, method: 'POST', headers }, (res) => {
      answered = true;
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, text, chunked: req.getHeader('content-length') === undefined }));
    });
    // The server may answer (and close) before the last chunk: that is the point.
    req.on('error', (err) => (answered ? undefined : reject(err)));
    const bytes = Buffer.from(body, 'utf8');
    let offset = 0;
    const writeNext = () => {
      if (answered || req.destroyed) return;
      if (offset >= bytes.length) return void req.end();
      req.write(bytes.subarray(offset, offset + chunkSize));
      offset += chunkSize;
      setTimeout(writeNext, 2);
    };
    writeNext();
  });
}

// ---------------------------------------------------------------------------------------------

describe('/authorize: a refused character in a parameter is an invalid_request error page (approved client)', () => {
  test.each([
    ['state', '%00'],
    ['state', `a%00b`],
    ['login_hint', 'alice%00%40example.com'],
    ['ui_locales', 'en%00'],
    ['client_id', '%00'],
    ['nonce', '%00'],
    ['an unknown parameter', '%00'],
  ])('%s = %s', async (name, raw) => {
    const before = await snapshot();
    const url = name === 'an unknown parameter' ? authorizeWith('x_extra', raw) : authorizeWith(name, raw);
    const r = await answer(await fetch(url, { redirect: 'manual' }));
    expect(r.status, r.text.slice(0, 300)).toBe(400);
    expect(r.location).toBeNull();
    expect(r.text).toContain('invalid_request');
    expect(r.text).not.toMatch(/at .+\.(ts|js):\d+/); // no stack trace
    expect(await snapshot()).toEqual(before);
    expect(errorLines()).toEqual([]);
  });

  // Percent-encoded bytes cannot carry a lone surrogate: ED A0 80 (its CESU-8 form) decodes to
  // U+FFFD, which is an ordinary character. Whatever the answer, it is not a failure.
  test.each([
    ['state', '%ED%A0%80'],
    ['login_hint', '%ED%B0%80'],
    ['ui_locales', '%C0%80'],
  ])('%s = %s (undecodable bytes): never 5xx, nothing logged as an error', async (name, raw) => {
    const r = await answer(await fetch(authorizeWith(name, raw), { redirect: 'manual' }));
    expect(r.status, r.text.slice(0, 300)).toBeLessThan(500);
    expect(errorLines()).toEqual([]);
  });
});

describe('/register: a refused character anywhere in the metadata is invalid_client_metadata (RFC 7591 §3.2.2)', () => {
  const base = { redirect_uris: ['http://127.0.0.1:5555/cb'], token_endpoint_auth_method: 'none' };
  test.each([
    ['client_name with NUL', { ...base, client_name: `x${NUL}y` }],
    ['client_name with a lone high surrogate', { ...base, client_name: `x${LONE_HIGH}` }],
    ['client_name with a lone low surrogate', { ...base, client_name: `${LONE_LOW}x` }],
    ['a redirect URI with NUL', { ...base, redirect_uris: [`http://127.0.0.1:5555/cb${NUL}`] }],
    ['a contact with a lone surrogate', { ...base, contacts: [`a${LONE_HIGH}@example.com`] }],
    ['scope with NUL', { ...base, scope: `files:read${NUL}` }],
    ['software_id with NUL', { ...base, software_id: NUL }],
    ['an unknown member', { ...base, x_extra: { nested: [`${NUL}`] } }],
    ['a member name with NUL', { ...base, [`x${NUL}`]: 'y' }],
    ['a member name with a lone surrogate', { ...base, [`x${LONE_HIGH}`]: 'y' }],
  ])('%s', async (_name, metadata) => {
    const before = await snapshot();
    const r = await answer(await fetch(`${app.issuer}/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(metadata) }));
    expect(r.status, r.text).toBe(400);
    expect(r.json?.error, r.text).toBe('invalid_client_metadata');
    expect(typeof r.json?.error_description).toBe('string');
    expect(await snapshot()).toEqual(before);
    expect(errorLines()).toEqual([]);
  });

  test('a surrogate pair (an emoji) is an ordinary character: registered', async () => {
    const r = await answer(await fetch(`${app.issuer}/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...base, client_name: 'Emoji \u{1F600} client' }) }));
    expect(r.status, r.text).toBe(201);
    expect(r.json?.client_name).toBe('Emoji \u{1F600} client');
  });
});

describe('/token: a refused character is invalid_request (RFC 6749 §5.2), and the attempt counts against the client', () => {
  test.each([
    ['client_id is NUL', `${NUL}`, (id: string) => new URLSearchParams({ grant_type: 'authorization_code', code: 'x', client_id: id, code_verifier: 'v'.repeat(43) }), {}],
    ['client_id ends in NUL', `hostile-client${NUL}`, (id: string) => new URLSearchParams({ grant_type: 'refresh_token', refresh_token: 'r', client_id: id }), {}],
    ['client_id in HTTP Basic with NUL', `basic${NUL}client`, () => new URLSearchParams({ grant_type: 'refresh_token', refresh_token: 'r' }), { basic: true }],
  ] as const)('%s', async (_name, clientId, body, options) => {
    const before = await snapshot();
    const hits = await tokenHits(clientId);
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
    if ('basic' in options) headers.authorization = `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:secret`).toString('base64')}`;
    const r = await answer(await fetch(`${app.issuer}/token`, { method: 'POST', headers, body: body(clientId) }));
    expect(r.status, r.text).toBe(400);
    expect(r.json?.error, r.text).toBe('invalid_request');
    expect(await tokenHits(clientId)).toBe(hits + 1);
    expect(await snapshot()).toEqual(before);
    expect(errorLines()).toEqual([]);
  });

  test('a refused character in another parameter of a known client: counted, invalid_request', async () => {
    const hits = await tokenHits(client.client_id);
    const r = await answer(
      await fetch(`${app.issuer}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'authorization_code', code: `abc${NUL}`, client_id: client.client_id, redirect_uri: CB, code_verifier: 'v'.repeat(43) }),
      }),
    );
    expect(r.status, r.text).toBe(400);
    expect(r.json?.error).toBe('invalid_request');
    expect(await tokenHits(client.client_id)).toBe(hits + 1);
    expect(errorLines()).toEqual([]);
  });

  test('sent chunked, without Content-Length: still read, counted and refused', async () => {
    const clientId = `chunked${NUL}`;
    const hits = await tokenHits(clientId);
    const body = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: 'r'.repeat(6000), client_id: clientId }).toString();
    const r = await postChunked(app.issuer, '/token', { 'content-type': 'application/x-www-form-urlencoded' }, body, 1024);
    expect(r.chunked).toBe(true);
    expect(r.status, r.text).toBe(400);
    expect(JSON.parse(r.text).error).toBe('invalid_request');
    expect(await tokenHits(clientId)).toBe(hits + 1);
    expect(errorLines()).toEqual([]);
  });
});

describe('sign-in forms: a refused character in the email is the form again, with the reason', () => {
  async function userSignInPage() {
    const jar = new CookieJar();
    const first = await browse(jar, authorizeWith('state', 'st'));
    expect(first.status).toBe(303);
    const page = await browse(jar, new URL(first.headers.get('location')!, app.issuer));
    const html = await page.text();
    const action = /<form method="post" action="([^"]+)"/.exec(html)![1]!;
    return { jar, action: new URL(action, app.issuer), csrf: csrfOf(html) };
  }

  test.each([
    ['email with NUL', { email: `alice${NUL}@example.com`, password: TEST_PASSWORD }],
    ['email that is only NUL', { email: NUL, password: 'x' }],
    ['password with NUL', { email: 'alice@example.com', password: `${TEST_PASSWORD}${NUL}` }],
  ])('the user sign-in (/interaction/:uid/login): %s', async (_name, fields) => {
    const { jar, action, csrf } = await userSignInPage();
    const before = await snapshot();
    const response = await browse(jar, action, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: formBody({ csrf, ...fields }) });
    const html = await response.text();
    expect(response.status, html.slice(0, 300)).toBe(400);
    expect(html).toContain('does not accept');
    expect(html).toMatch(/name="email"/); // the sign-in form, re-shown
    expect(html).toMatch(/name="csrf"/);
    expect(await snapshot()).toEqual(before);
    expect(errorLines()).toEqual([]);
  });

  test.each([
    ['email with NUL', { email: `admin${NUL}@example.com`, password: ADMIN_PASSWORD }],
    ['email that is only NUL', { email: NUL, password: 'x' }],
  ])('the admin sign-in (/sign-in): %s', async (_name, fields) => {
    const jar = new CookieJar();
    const page = await browse(jar, `${app.adminUrl}/sign-in`);
    const csrf = csrfOf(await page.text());
    const before = await snapshot();
    const response = await browse(jar, `${app.adminUrl}/sign-in`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: app.adminUrl },
      body: formBody({ csrf, ...fields }),
    });
    const html = await response.text();
    expect(response.status, html.slice(0, 300)).toBe(400);
    expect(html).toContain('does not accept');
    expect(html).toMatch(/name="email"/);
    expect(response.headers.getSetCookie().some((c) => c.startsWith('gh_admin='))).toBe(false);
    expect(await snapshot()).toEqual(before);
    expect(errorLines()).toEqual([]);
  });

  test('a correct sign-in still works after the refusals', async () => {
    expect((await signInAdmin(app, ADMIN_EMAIL, ADMIN_PASSWORD)).csrf).toBeTruthy();
  });
});

describe('the admin API: a refused character in a filter, id or body is a 400 JSON invalid_request', () => {
  const apiGet = (path: string) => browse(admin.jar, `${app.adminUrl}/api/v1${path}`, { headers: { accept: 'application/json' } });
  test.each([
    ['/audit?client_id=%00'],
    ['/audit?event=x%00'],
    ['/audit?account_id=%00'],
    ['/audit?before=%00'],
    ['/clients?status=%00'],
    ['/clients/%00'],
    ['/clients/abc%00def'],
    ['/resources?uri=%00'],
    ['/connections?client_id=%00'],
    ['/users?x%00=1'],
  ])('GET %s', async (path) => {
    const before = await snapshot();
    const r = await answer(await apiGet(path));
    expect(r.status, r.text).toBe(400);
    expect(r.json?.error, r.text).toBe('invalid_request');
    expect(await snapshot()).toEqual(before);
    expect(errorLines()).toEqual([]);
  });

  test.each([
    ['a reason with NUL', `/clients/${'placeholder'}/reject`, { reason: `no${NUL}` }],
    ['a reason with a lone surrogate', `/clients/${'placeholder'}/suspend`, { reason: `no${LONE_HIGH}` }],
    ['a token name with NUL', '/tokens', { name: `ci${NUL}` }],
    ['a nested key with NUL', '/resources', { uri: 'https://x.example', scopes: [{ [`n${NUL}`]: 'x' }] }],
  ])('POST with %s', async (_name, path, body) => {
    const before = await snapshot();
    const response = await browse(admin.jar, `${app.adminUrl}/api/v1${path.replace('placeholder', client.client_id)}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json', 'x-csrf-token': admin.csrf, origin: app.adminUrl },
      body: JSON.stringify(body),
    });
    const r = await answer(response);
    expect(r.status, r.text).toBe(400);
    expect(r.json?.error, r.text).toBe('invalid_request');
    expect(await snapshot()).toEqual(before);
    expect(errorLines()).toEqual([]);
  });

  test('a console page with a refused character in its query: a 400 page, not a failure', async () => {
    const response = await admin.get('/clients?status=%00');
    expect(response.status).toBe(400);
    expect(errorLines()).toEqual([]);
  });
});

describe('body limits are enforced on the bytes read: chunked bodies without Content-Length (issue 15 §8)', () => {
  test('a 40 KiB chunked registration is a 413 (RFC 7591-shaped) and stores nothing', async () => {
    const before = await snapshot();
    const body = JSON.stringify({ redirect_uris: ['http://127.0.0.1:5555/cb'], client_name: 'Big', x_padding: 'a'.repeat(40 * 1024) });
    const r = await postChunked(app.issuer, '/register', { 'content-type': 'application/json' }, body);
    expect(r.chunked).toBe(true);
    expect(r.status, r.text).toBe(413);
    const json = JSON.parse(r.text);
    expect(json.error).toBe('invalid_request');
    expect(json.error_description).toMatch(/larger than 16384 bytes/);
    expect(await snapshot()).toEqual(before);
    expect(errorLines()).toEqual([]);
  });

  test('the same answer as the Content-Length case', async () => {
    const body = JSON.stringify({ redirect_uris: ['http://127.0.0.1:5555/cb'], x_padding: 'a'.repeat(40 * 1024) });
    const r = await answer(await fetch(`${app.issuer}/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body }));
    expect(r.status).toBe(413);
    expect(r.json?.error).toBe('invalid_request');
    expect(r.json?.error_description).toMatch(/larger than 16384 bytes/);
  });

  test('a small chunked registration is read as usual: registered', async () => {
    const body = JSON.stringify({ redirect_uris: ['http://127.0.0.1:5555/cb'], client_name: 'Chunked client', token_endpoint_auth_method: 'none' });
    const r = await postChunked(app.issuer, '/register', { 'content-type': 'application/json' }, body, 16);
    expect(r.chunked).toBe(true);
    expect(r.status, r.text).toBe(201);
    expect(JSON.parse(r.text).client_name).toBe('Chunked client');
  });

  test.each([
    ['/register', 'application/json'],
    ['/token', 'application/x-www-form-urlencoded'],
    ['/revoke', 'application/x-www-form-urlencoded'],
  ])('an empty chunked body at %s: still answered by the endpoint (400)', async (path, type) => {
    const r = await postChunked(app.issuer, path, { 'content-type': type, 'transfer-encoding': 'chunked' }, '');
    expect(r.status, r.text).toBe(400);
    expect(JSON.parse(r.text).error, r.text).toBe('invalid_request');
    expect(errorLines()).toEqual([]);
  });

  test('a chunked registration with a NUL: invalid_client_metadata', async () => {
    const before = await snapshot();
    const body = JSON.stringify({ redirect_uris: ['http://127.0.0.1:5555/cb'], client_name: `x${NUL}` });
    const r = await postChunked(app.issuer, '/register', { 'content-type': 'application/json' }, body, 8);
    expect(r.status, r.text).toBe(400);
    expect(JSON.parse(r.text).error).toBe('invalid_client_metadata');
    expect(await snapshot()).toEqual(before);
  });

  test('an ordinary chunked token request is read whole by oidc-provider, and counted by the rate limit', async () => {
    const hits = await tokenHits(client.client_id);
    const body = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: 'not-a-real-token', client_id: client.client_id }).toString();
    const r = await postChunked(app.issuer, '/token', { 'content-type': 'application/x-www-form-urlencoded' }, body, 10);
    expect(r.chunked).toBe(true);
    // invalid_grant proves oidc-provider parsed every parameter, the last chunk included.
    expect(r.status, r.text).toBe(400);
    expect(JSON.parse(r.text).error).toBe('invalid_grant');
    expect(await tokenHits(client.client_id)).toBe(hits + 1);
  });

  test('a chunked token request larger than oidc-provider accepts: a 400, not a failure', async () => {
    const body = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: 'r'.repeat(60 * 1024), client_id: client.client_id }).toString();
    const r = await postChunked(app.issuer, '/token', { 'content-type': 'application/x-www-form-urlencoded' }, body);
    expect(r.status, r.text).toBeGreaterThanOrEqual(400);
    expect(r.status, r.text).toBeLessThan(500);
    expect(errorLines()).toEqual([]);
  });

  test('a chunked 20 KiB sign-in form is a 413', async () => {
    const jar = new CookieJar();
    const first = await browse(jar, authorizeWith('state', 'st'));
    const uid = /\/interaction\/([^/?]+)/.exec(first.headers.get('location')!)![1]!;
    const before = await snapshot();
    const r = await postChunked(app.issuer, `/interaction/${uid}/login`, { 'content-type': 'application/x-www-form-urlencoded', cookie: jar.header(new URL(`${app.issuer}/interaction/${uid}`)) }, `email=${'a'.repeat(20 * 1024)}&password=x`);
    expect(r.status).toBe(413);
    expect(await snapshot()).toEqual(before);
    expect(errorLines()).toEqual([]);
  });

  test('a chunked 20 KiB admin sign-in form is a 413', async () => {
    const r = await postChunked(app.adminUrl, '/sign-in', { 'content-type': 'application/x-www-form-urlencoded', origin: app.adminUrl }, `email=${'a'.repeat(20 * 1024)}&password=x`);
    expect(r.status).toBe(413);
    expect(errorLines()).toEqual([]);
  });

  test('a chunked 100 KiB admin API body is a 413 JSON invalid_request', async () => {
    const before = await snapshot();
    const r = await postChunked(
      app.adminUrl,
      '/api/v1/tokens',
      { 'content-type': 'application/json', accept: 'application/json', 'x-csrf-token': admin.csrf, origin: app.adminUrl, cookie: admin.jar.header(new URL(`${app.adminUrl}/api/v1/tokens`)) },
      JSON.stringify({ name: 'a'.repeat(100 * 1024) }),
    );
    expect(r.status, r.text).toBe(413);
    expect(JSON.parse(r.text).error).toBe('invalid_request');
    expect(await snapshot()).toEqual(before);
    expect(errorLines()).toEqual([]);
  });
});
