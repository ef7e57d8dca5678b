/**
 * Stateless instances (issue 7 §1): any instance serves any step of any flow, and what one
 * instance (or the CLI) changes, every other sees, because PostgreSQL is the only shared state.
 *
 * Three real `gatehouse serve` processes on one database, behind a load balancer whose URL is the
 * issuer of all three. The balancer sends each request where the test says (round-robin, or "the
 * next request goes to instance k") and records who served it, so every test below asserts which
 * process ran which step. The official MCP SDK client drives the full flow; signing-key rotation,
 * client approval and suspension, and the token-endpoint rate limit are each changed through one
 * instance and observed through the others.
 *
 * The Client ID Metadata Document cache is covered at the end with two in-process apps on one
 * database, since only the in-process test hook lets Gatehouse trust the local https document
 * server.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { auth } from '@modelcontextprotocol/sdk/client/auth.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose';
import { sql } from 'kysely';
import request from 'supertest';
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { createApiTokens } from '../../src/admin/api-tokens.ts';
import { createAccountsService } from '../../src/accounts/accounts.service.ts';
import { createKeysService } from '../../src/keys/keys.service.ts';
import { createSecretBox } from '../../src/keys/secret-box.ts';
import { createResourcesService } from '../../src/resources/resources.service.ts';
import { ADMIN_EMAIL, ADMIN_PASSWORD, csrfOf, formBody } from '../support/admin.ts';
import { seed, startTestApp, TEST_PASSWORD, type TestApp } from '../support/app.ts';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startDocumentServer, TEST_DOCUMENT_TRUST, type DocumentServer } from '../support/document-server.ts';
import { startBalancer, startInstances, type InstanceSet, type Served } from '../support/instances.ts';
import { InMemoryOAuthProvider } from '../support/mcp-client.ts';
import { registerMcpResource, startMcpServer, WHOAMI_TOOL, type TestMcpServer, type WhoAmI } from '../support/mcp-server.ts';
import { authorizationUrl, authorizeForCode, authorizeInBrowser, browse, CookieJar, exchangeCode, pkcePair, REDIRECT_URI, tokenRequest } from '../support/oauth.ts';

const SCOPE = 'mcp:tools';
const EMAIL = 'multi@example.com';
/** Token requests per client per minute, for the whole process set (scenario e). */
const TOKEN_LIMIT = 10;
/** The lead a rotated key is published before it signs (scenario c). */
const LEAD_SECONDS = 4;
const INSTANCES = [1, 2, 3];

/** Set MULTI_INSTANCE_TRACE=1 to print which instance served each request of each step. */
const TRACE = !!process.env.MULTI_INSTANCE_TRACE;
function trace(label: string, served: Served[]): void {
  if (!TRACE) return;
  const lines = served.map((s) => `    #${s.instance}  ${s.status}  ${s.method.padEnd(4)} ${s.url.split('?')[0]}`);
  process.stdout.write(`  ${label}\n${lines.join('\n')}\n`);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const distinct = (served: Served[]) => [...new Set(served.map((s) => s.instance))].sort();
const pathOf = (s: Served) => s.url.split('?')[0]!;

describe('three Gatehouse processes on one database, behind a load balancer', () => {
  let database: TestDatabase;
  let set: InstanceSet;
  let mcp: TestMcpServer;
  let accountId: string;
  let apiToken: string;

  beforeAll(async () => {
    const started = Date.now();
    database = await createTestDatabase({ kind: 'postgres' });
    // The balancers come first: the public one's URL is the issuer of every instance (and the
    // authorization server the MCP server trusts); the admin one's is GATEHOUSE_ADMIN_URL.
    const lb = await startBalancer();
    const adminLb = await startBalancer();
    mcp = await startMcpServer({ issuer: lb.url, scopes: [SCOPE] });
    const resources = createResourcesService({ db: database.db });
    await registerMcpResource({ resources }, mcp, SCOPE);
    const accounts = createAccountsService({ db: database.db });
    accountId = (await accounts.create(EMAIL, TEST_PASSWORD)).id;
    const admin = await accounts.create(ADMIN_EMAIL, ADMIN_PASSWORD, 'admin');
    apiToken = (await createApiTokens(database.db).create(admin.id, 'multi-instance')).token;
    if (TRACE) process.stdout.write(`  database and seed in ${Date.now() - started} ms\n`);
    set = await startInstances({
      databaseUrl: database.url!,
      lb,
      adminLb,
      env: {
        // Manual approval is the default; said here because scenario d depends on it.
        GATEHOUSE_CLIENT_APPROVAL: 'manual',
        GATEHOUSE_TOKEN_REQUESTS_PER_MINUTE: String(TOKEN_LIMIT),
      },
    });
    if (TRACE) process.stdout.write(`  set up in ${Date.now() - started} ms\n`);
  });

  afterAll(async () => {
    const stopping = Date.now();
    await set?.stop();
    if (TRACE) process.stdout.write(`  stopped in ${Date.now() - stopping} ms: ${set?.instances.map((p) => `#${p.index} ${p.child.signalCode ?? p.child.exitCode}`).join(', ')}\n`);
    await mcp?.close();
    await database?.close();
  });

  beforeEach(({ onTestFailed }) => {
    onTestFailed(() => {
      if (set) process.stderr.write(`${set.logs()}\n`);
    });
  });

  // --- helpers --------------------------------------------------------------------------------

  /** Sends the next public request to instance `k` (or round-robin), then makes it. */
  function on<T>(k: number | undefined, work: () => Promise<T>): Promise<T> {
    if (k !== undefined) set.lb.next(k);
    return work();
  }

  /** Every request made by `work` goes to instance `k`. */
  async function pinned<T>(k: number, work: () => Promise<T>): Promise<T> {
    set.lb.pin(k);
    try {
      return await work();
    } finally {
      set.lb.roundRobin();
    }
  }

  async function adminApi(k: number | undefined, path: string, body?: unknown) {
    if (k !== undefined) set.adminLb.next(k);
    const response = await fetch(`${set.adminUrl}/api/v1${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers: { authorization: `Bearer ${apiToken}`, accept: 'application/json', ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: response.status, body: (await response.json()) as Record<string, any> };
  }

  const approve = (k: number | undefined, clientId: string) =>
    adminApi(k, `/clients/${encodeURIComponent(clientId)}/approve`, { ceiling: [{ resource: mcp.url, scopes: [SCOPE] }] });

  async function register(k: number | undefined, name: string) {
    const response = await on(k, () =>
      fetch(`${set.issuer}/register`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ client_name: name, redirect_uris: [REDIRECT_URI], token_endpoint_auth_method: 'none' }),
      }),
    );
    const body = (await response.json()) as Record<string, any>;
    expect(response.status, JSON.stringify(body)).toBe(201);
    return body as { client_id: string; redirect_uris: string[] };
  }

  async function token(k: number | undefined, params: Record<string, string>) {
    const response = await on(k, () =>
      fetch(`${set.issuer}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(params) }),
    );
    return { status: response.status, body: (await response.json()) as Record<string, any>, headers: response.headers };
  }

  const refresh = (k: number | undefined, clientId: string, refreshToken: string) =>
    token(k, { grant_type: 'refresh_token', refresh_token: refreshToken, client_id: clientId, resource: mcp.url });

  /** Authorization request → sign-in → consent → code, each request routed by `route` (or round-robin). */
  async function authorize(clientId: string, options: { fetch?: typeof fetch } = {}) {
    const { verifier, challenge } = pkcePair();
    const state = crypto.randomUUID();
    const { callback } = await authorizeInBrowser(
      authorizationUrl(set.issuer, {
        client_id: clientId,
        response_type: 'code',
        redirect_uri: REDIRECT_URI,
        code_challenge: challenge,
        code_challenge_method: 'S256',
        resource: mcp.url,
        scope: SCOPE,
        state,
      }),
      { email: EMAIL, password: TEST_PASSWORD, ...(options.fetch ? { fetch: options.fetch } : {}) },
    );
    expect(callback.searchParams.get('error')).toBeNull();
    expect(callback.searchParams.get('state')).toBe(state);
    expect(callback.searchParams.get('iss')).toBe(set.issuer);
    return { code: callback.searchParams.get('code')!, verifier };
  }

  const exchange = (k: number | undefined, clientId: string, code: string, verifier: string) =>
    token(k, { grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: REDIRECT_URI, client_id: clientId, resource: mcp.url });

  /** A client registered and approved, with a first token response (round-robin throughout). */
  async function connectedClient(name: string) {
    const client = await register(undefined, name);
    expect((await approve(undefined, client.client_id)).status).toBe(200);
    const { code, verifier } = await authorize(client.client_id);
    const tokens = await exchange(undefined, client.client_id, code, verifier);
    expect(tokens.status, JSON.stringify(tokens.body)).toBe(200);
    return { client, tokens: tokens.body };
  }

  async function jwksOf(k: number): Promise<JSONWebKeySet> {
    const response = await on(k, () => fetch(`${set.issuer}/jwks`));
    expect(response.status).toBe(200);
    return (await response.json()) as JSONWebKeySet;
  }

  async function callWhoami(provider: InMemoryOAuthProvider): Promise<WhoAmI> {
    const client = new Client({ name: 'gatehouse-multi-instance', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(mcp.url), { authProvider: provider }));
    try {
      const result = await client.callTool({ name: WHOAMI_TOOL, arguments: {} });
      expect(result.isError).toBeFalsy();
      return JSON.parse((result.content as Array<{ text: string }>)[0]!.text) as WhoAmI;
    } finally {
      await client.close();
    }
  }

  // --- scenarios ------------------------------------------------------------------------------

  test('the instances are three processes, each printing its own ephemeral listeners, one issuer for all', async () => {
    expect(set.instances).toHaveLength(3);
    const pids = new Set(set.instances.map((p) => p.child.pid));
    expect(pids.size).toBe(3);
    const ports = new Set(set.instances.flatMap((p) => [new URL(p.url).port, new URL(p.adminUrl).port]));
    expect(ports.size).toBe(6);
    for (const k of INSTANCES) {
      const metadata = await on(k, () => fetch(`${set.issuer}/.well-known/oauth-authorization-server`).then((r) => r.json() as Promise<Record<string, unknown>>));
      expect(metadata).toMatchObject({ issuer: set.issuer, jwks_uri: `${set.issuer}/jwks`, token_endpoint: `${set.issuer}/token` });
    }
    // Three processes started at once on an empty database generated one signing key between them.
    const first = await jwksOf(1);
    expect(first.keys).toHaveLength(1);
    expect(await jwksOf(2)).toEqual(first);
    expect(await jwksOf(3)).toEqual(first);
  });

  test('(a) the MCP SDK client, round-robin: discovery, registration, authorization, code, tool call and refresh spread over all three', async () => {
    set.lb.roundRobin();
    const steps: Record<string, Served[]> = {};
    let mark = set.lb.mark();
    const step = (name: string) => {
      steps[name] = set.lb.since(mark);
      mark = set.lb.mark();
    };

    class Provider extends InMemoryOAuthProvider {
      code: string | undefined;
      async redirectToAuthorization(url: URL) {
        this.authorizationUrls.push(url);
        step('discovery, registration');
        // The client registered through one instance is pending; an administrator approves it.
        expect((await approve(undefined, this.client!.client_id)).status).toBe(200);
        const { callback } = await authorizeInBrowser(url, { email: EMAIL, password: TEST_PASSWORD });
        expect(callback.searchParams.get('iss')).toBe(set.issuer);
        expect(callback.searchParams.get('state')).toBe(this.lastState);
        this.code = callback.searchParams.get('code') ?? undefined;
        step('authorize, sign-in, consent');
      }
    }
    const provider = new Provider(REDIRECT_URI, 'Gatehouse multi-instance (MCP SDK)');

    expect(await auth(provider, { serverUrl: mcp.url })).toBe('REDIRECT');
    expect(provider.code).toBeTruthy();
    expect(await auth(provider, { serverUrl: mcp.url, authorizationCode: provider.code! })).toBe('AUTHORIZED');
    step('code exchange');
    const first = provider.storedTokens!;
    expect(decodeJwt(first.access_token)).toMatchObject({ iss: set.issuer, aud: mcp.url, sub: accountId, scope: SCOPE });

    expect(await callWhoami(provider)).toEqual({ sub: accountId, client_id: provider.client!.client_id, scopes: [SCOPE], aud: mcp.url });
    step('MCP call (the MCP server fetches the JWKS)');

    provider.storedTokens = { ...first, access_token: '' };
    expect(await auth(provider, { serverUrl: mcp.url })).toBe('AUTHORIZED');
    step('refresh');
    const second = provider.storedTokens!;
    expect(second.refresh_token).toBeTruthy();
    expect(second.refresh_token).not.toBe(first.refresh_token);
    expect(provider.authorizationUrls).toHaveLength(1); // a refresh, not a new authorization
    expect((await callWhoami(provider)).sub).toBe(accountId);
    step('MCP call with the refreshed token');

    for (const [name, served] of Object.entries(steps)) trace(`(a) ${name}`, served);
    const all = Object.values(steps).flat();
    expect(all.every((s) => s.status > 0 && s.status < 500)).toBe(true);
    // Round-robin: every request was served by another process than the one before it …
    for (let i = 1; i < all.length; i++) expect(all[i]!.instance).not.toBe(all[i - 1]!.instance);
    // … so the browser's steps, each resting on state the previous one wrote, crossed instances.
    const browser = steps['authorize, sign-in, consent']!.filter((s) => /^\/(authorize|interaction)/.test(pathOf(s)));
    expect(browser.length).toBeGreaterThanOrEqual(5);
    expect(distinct(browser)).toEqual(INSTANCES);
    expect(distinct(all)).toEqual(INSTANCES);
    expect(steps['code exchange']!.filter((s) => pathOf(s) === '/token')).toHaveLength(1);
    expect(steps.refresh!.filter((s) => pathOf(s) === '/token')).toHaveLength(1);
  });

  test('(b) directed: authorize on 1, sign in on 2, consent on 1, exchange on 3, refresh on 1; the old refresh token on 2 revokes the family, seen from 3', async () => {
    const client = await register(2, 'Directed client');
    expect((await approve(3, client.client_id)).status).toBe(200);

    // The browser's requests, routed by step: the authorization request to 1, the sign-in page
    // and form to 2, everything after sign-in (consent page and form, and oidc-provider's resume
    // of the authorization, which issues the code) to 1.
    let phase: 'authorize' | 'sign-in' | 'consent' = 'authorize';
    const where = { authorize: 1, 'sign-in': 2, consent: 1 };
    const routed: typeof fetch = (input, init) => {
      const path = new URL(input instanceof Request ? input.url : input).pathname;
      if (phase === 'authorize' && path.startsWith('/interaction/')) phase = 'sign-in';
      set.lb.next(where[phase]);
      if (init?.method === 'POST' && path.endsWith('/login')) phase = 'consent';
      return fetch(input, init);
    };
    let mark = set.lb.mark();
    const { code, verifier } = await authorize(client.client_id, { fetch: routed });
    const browser = set.lb.since(mark);
    trace('(b) authorize on 1, sign in on 2, consent on 1', browser);
    expect(browser.map((s) => [s.instance, s.method, pathOf(s).replace(/^\/(authorize|interaction)\/[^/]+/, '/$1/:uid')])).toEqual([
      [1, 'GET', '/authorize'],
      [2, 'GET', '/interaction/:uid'],
      [2, 'POST', '/interaction/:uid/login'],
      [1, 'GET', '/authorize/:uid'],
      [1, 'GET', '/interaction/:uid'],
      [1, 'POST', '/interaction/:uid/consent'],
      [1, 'GET', '/authorize/:uid'],
    ]);

    mark = set.lb.mark();
    const exchanged = await exchange(3, client.client_id, code, verifier);
    expect(exchanged.status, JSON.stringify(exchanged.body)).toBe(200);
    const oldRefresh = exchanged.body.refresh_token as string;
    const refreshed = await refresh(1, client.client_id, oldRefresh);
    expect(refreshed.status, JSON.stringify(refreshed.body)).toBe(200);
    const newest = refreshed.body.refresh_token as string;
    expect(newest).not.toBe(oldRefresh);
    expect(decodeJwt(refreshed.body.access_token)).toMatchObject({ sub: accountId, aud: mcp.url });

    // The rotated-out token again at another instance, as a client that lost the answer would: a
    // retry within the rotation grace, answered with a successor that replaces the undelivered one …
    const retried = await refresh(2, client.client_id, oldRefresh);
    expect(retried.status, JSON.stringify(retried.body)).toBe(200);
    // … and once more, at a third: reuse, refused, and the whole family is revoked …
    const replay = await refresh(3, client.client_id, oldRefresh);
    expect(replay.status).toBe(400);
    expect(replay.body.error).toBe('invalid_grant');
    // … as every instance sees: neither successor works.
    const after = await refresh(1, client.client_id, retried.body.refresh_token);
    expect(after.status).toBe(400);
    expect(after.body.error).toBe('invalid_grant');
    expect((await refresh(3, client.client_id, newest)).body.error).toBe('invalid_grant');

    const tokens = set.lb.since(mark);
    trace('(b) exchange on 3, refresh on 1, retry on 2, replay on 3, successors on 1 and 3', tokens);
    expect(tokens.map((s) => [s.instance, pathOf(s), s.status])).toEqual([
      [3, '/token', 200],
      [1, '/token', 200],
      [2, '/token', 200],
      [3, '/token', 400],
      [1, '/token', 400],
      [3, '/token', 400],
    ]);
  });

  test('(c) a key rotated by the CLI is published by every instance before it signs, then every instance signs with it', async () => {
    const { client, tokens } = await connectedClient('Rotation client');
    const before = await jwksOf(1);
    expect(before.keys).toHaveLength(1);
    const oldKid = before.keys[0]!.kid!;
    expect(decodeProtectedHeader(tokens.access_token).kid).toBe(oldKid);

    const cliStarted = Date.now();
    const rotated = await set.cli(['keys', 'rotate', '--lead', `${LEAD_SECONDS}s`]);
    if (TRACE) process.stdout.write(`  (c) gatehouse keys rotate took ${Date.now() - cliStarted} ms\n`);
    expect(rotated.code, rotated.stderr).toBe(0);
    const keys = await createKeysService({ db: database.db, secretBox: createSecretBox(undefined) }).list();
    const next = keys.find((k) => k.state === 'next');
    expect(next, JSON.stringify(keys)).toBeDefined();
    const newKid = next!.kid;
    const activatesAt = next!.activatesAt!.getTime();
    expect(rotated.stdout).toContain(newKid);

    // Every instance publishes the new key (key check every second), before it signs anywhere.
    const publishedAt: Record<number, number> = {};
    while (Object.keys(publishedAt).length < 3) {
      for (const k of INSTANCES) {
        if (publishedAt[k]) continue;
        const kids = (await jwksOf(k)).keys.map((key) => key.kid);
        if (kids.includes(newKid)) {
          expect(kids).toContain(oldKid); // the old key stays published for the tokens it signed
          publishedAt[k] = Date.now();
        }
      }
      expect(Date.now(), 'every instance publishes the new key within the lead').toBeLessThan(activatesAt);
      await sleep(200);
    }
    if (TRACE) process.stdout.write(`  (c) published ${INSTANCES.map((k) => `#${k} ${activatesAt - publishedAt[k]!} ms`).join(', ')} before activation\n`);

    // After the lead, each instance signs with the new key; each token verifies against the JWKS
    // that the *next* instance publishes.
    await sleep(Math.max(0, activatesAt - Date.now()) + 1200);
    let refreshToken = tokens.refresh_token as string;
    const signers: Array<{ instance: number; kid: string | undefined }> = [];
    for (const k of INSTANCES) {
      let issued: string | undefined;
      for (let attempt = 0; attempt < 3 && !issued; attempt++) {
        const response = await refresh(k, client.client_id, refreshToken);
        expect(response.status, JSON.stringify(response.body)).toBe(200);
        refreshToken = response.body.refresh_token;
        const kid = decodeProtectedHeader(response.body.access_token).kid;
        signers.push({ instance: k, kid });
        if (kid === newKid) issued = response.body.access_token;
        else await sleep(1000);
      }
      expect(issued, `instance ${k} signs with the new key: ${JSON.stringify(signers)}`).toBeDefined();
      const other = (k % 3) + 1;
      const { protectedHeader, payload } = await jwtVerify(issued!, createLocalJWKSet(await jwksOf(other)), { issuer: set.issuer, audience: mcp.url, typ: 'at+jwt' });
      expect(protectedHeader.kid).toBe(newKid);
      expect(payload.client_id).toBe(client.client_id);
    }
    if (TRACE) process.stdout.write(`  (c) tokens after activation: ${JSON.stringify(signers)}\n`);
  });

  test('(d) a client registered through 1 is pending on all; approved through 2, it is authorized on 3; suspended through 1, its refresh token fails on 2 and 3', async () => {
    const client = await register(1, 'Onboarded client');
    const path = `/clients/${encodeURIComponent(client.client_id)}`;
    for (const k of INSTANCES) {
      const seen = await adminApi(k, path);
      expect(seen.status).toBe(200);
      expect(seen.body.status).toBe('pending');
    }
    // The user is told it waits for approval, whichever instance answers.
    for (const k of [2, 3]) {
      const page = await pinned(k, () => openAuthorization(client.client_id));
      expect(page.status).toBe(200);
      expect(page.html).toContain('is waiting for approval');
    }

    const mark = set.adminLb.mark();
    const approved = await approve(2, client.client_id);
    expect(approved.status).toBe(200);
    expect(approved.body.status).toBe('approved');
    expect(set.adminLb.since(mark).map((s) => s.instance)).toEqual([2]);

    const publicMark = set.lb.mark();
    const { code, verifier } = await pinned(3, () => authorize(client.client_id));
    expect(distinct(set.lb.since(publicMark))).toEqual([3]);
    const tokens = await exchange(1, client.client_id, code, verifier);
    expect(tokens.status, JSON.stringify(tokens.body)).toBe(200);

    const suspended = await adminApi(1, `${path}/suspend`, { reason: 'multi-instance test' });
    expect(suspended.status).toBe(200);
    expect(suspended.body.status).toBe('suspended');
    for (const k of [2, 3]) {
      const refused = await refresh(k, client.client_id, tokens.body.refresh_token);
      expect(refused.status).toBe(400);
      expect(refused.body.error).toBe('invalid_grant');
      expect((await adminApi(k, path)).body.status).toBe('suspended');
    }
    const page = await pinned(3, () => openAuthorization(client.client_id));
    expect(page.status).toBe(403);
    expect(page.html).toContain('has suspended');
  });

  test(`(e) the token-endpoint limit is one budget across instances: ${TOKEN_LIMIT} requests of a client spread over all three, then 429 on each`, async () => {
    const client = await register(undefined, 'Busy client');
    expect((await approve(undefined, client.client_id)).status).toBe(200);
    const { code, verifier } = await authorize(client.client_id);

    const mark = set.lb.mark();
    // Request i goes to instance (i mod 3) + 1: the first is the code exchange, then refreshes.
    let response = await exchange(1, client.client_id, code, verifier);
    expect(response.status).toBe(200);
    let refreshToken = response.body.refresh_token as string;
    for (let i = 1; i < TOKEN_LIMIT; i++) {
      response = await refresh((i % 3) + 1, client.client_id, refreshToken);
      expect(response.status, `request ${i + 1}: ${JSON.stringify(response.body)}`).toBe(200);
      refreshToken = response.body.refresh_token;
    }
    for (let i = TOKEN_LIMIT; i < TOKEN_LIMIT + 3; i++) {
      const limited = await refresh((i % 3) + 1, client.client_id, refreshToken);
      expect(limited.status).toBe(429);
      expect(limited.body.error_description).toMatch(/^too many token requests for this client: try again in \d+ seconds$/);
      const retryAfter = Number(limited.headers.get('retry-after'));
      expect(retryAfter).toBeGreaterThan(0);
      expect(retryAfter).toBeLessThanOrEqual(60);
    }
    const served = set.lb.since(mark);
    trace('(e) token requests', served);
    const allowed = served.filter((s) => s.status === 200);
    expect(allowed).toHaveLength(TOKEN_LIMIT);
    // No instance saw more than a third of the budget, yet the budget ran out: the counter is shared.
    for (const k of INSTANCES) expect(allowed.filter((s) => s.instance === k).length).toBeLessThanOrEqual(Math.ceil(TOKEN_LIMIT / 3));
    expect(distinct(served.filter((s) => s.status === 429))).toEqual(INSTANCES);
  });

  test('an admin console session started across two instances holds on every instance', async () => {
    const jar = new CookieJar();
    set.adminLb.next(1);
    const page = await browse(jar, `${set.adminUrl}/sign-in`);
    set.adminLb.next(2);
    const signedIn = await browse(jar, `${set.adminUrl}/sign-in`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: set.adminUrl },
      body: formBody({ csrf: csrfOf(await page.text()), email: ADMIN_EMAIL, password: ADMIN_PASSWORD }),
    });
    expect(signedIn.status).toBe(303);
    let csrf = '';
    for (const k of INSTANCES) {
      set.adminLb.next(k);
      const me = await browse(jar, `${set.adminUrl}/api/v1/me`, { headers: { accept: 'application/json' } });
      expect(me.status).toBe(200);
      expect(await me.json()).toEqual({ email: ADMIN_EMAIL, via: 'session' });
      set.adminLb.next(k);
      const pending = await browse(jar, `${set.adminUrl}/pending`);
      expect(pending.status).toBe(200);
      csrf = csrfOf(await pending.text());
    }
    // A change made with the session's CSRF token, read on instance 3, accepted by instance 1.
    set.adminLb.next(1);
    const created = await browse(jar, `${set.adminUrl}/api/v1/tokens`, {
      method: 'POST',
      headers: { accept: 'application/json', 'content-type': 'application/json', origin: set.adminUrl, 'x-csrf-token': csrf },
      body: JSON.stringify({ name: 'made across instances' }),
    });
    expect(created.status).toBe(201);
  });

  test('no instance logged an error', () => {
    for (const p of set.instances) {
      const errors = p.stderr.split('\n').filter((line) => /"level":(50|60)/.test(line));
      expect(errors, `instance ${p.index}`).toEqual([]);
    }
  });

  /** Starts an authorization in a fresh browser and follows Gatehouse's redirects to the first page. */
  async function openAuthorization(clientId: string) {
    const jar = new CookieJar();
    let response = await browse(
      jar,
      authorizationUrl(set.issuer, {
        client_id: clientId,
        response_type: 'code',
        redirect_uri: REDIRECT_URI,
        code_challenge: pkcePair().challenge,
        code_challenge_method: 'S256',
        resource: mcp.url,
        scope: SCOPE,
        state: 'st',
      }),
    );
    while (response.status === 303 || response.status === 302) {
      const location = new URL(response.headers.get('location')!, set.issuer);
      if (location.origin !== set.issuer) break;
      response = await browse(jar, location);
    }
    return { status: response.status, html: await response.text() };
  }
});

describe('the Client ID Metadata Document cache, shared by two in-process apps on one database', () => {
  const RESOURCE = 'https://mcp.example.com';
  const OTHER_REDIRECT = 'http://127.0.0.1:53682/other-callback';
  let database: TestDatabase;
  let documents: DocumentServer;
  let a: TestApp;
  let b: TestApp;

  beforeAll(async () => {
    documents = await startDocumentServer();
    database = await createTestDatabase();
    const testOnly = { documentFetchTrust: TEST_DOCUMENT_TRUST };
    a = await startTestApp({ database, testOnly });
    b = await startTestApp({ database, testOnly });
    await seed(a, { uri: RESOURCE });
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await documents?.close();
    await database?.close();
  });

  const startAuthorization = (app: TestApp, clientId: string, redirectUri = REDIRECT_URI) =>
    request(app.issuer)
      .get('/authorize')
      .query({ client_id: clientId, response_type: 'code', redirect_uri: redirectUri, code_challenge: pkcePair().challenge, code_challenge_method: 'S256', resource: RESOURCE, state: 's' });

  test('a document fetched by one app is served from the shared cache by the other, and its expiry and refetch are seen by both', async () => {
    const path = '/multi-instance/metadata.json';
    const clientId = documents.url(path);
    const publish = (redirectUri: string) =>
      documents.serve(path, {
        headers: { 'cache-control': 'max-age=600' },
        body: { client_id: clientId, client_name: 'Shared document client', redirect_uris: [redirectUri] },
      });
    publish(REDIRECT_URI);

    expect((await startAuthorization(a, clientId)).status).toBe(303);
    expect(documents.hits(path)).toBe(1);
    expect((await startAuthorization(b, clientId)).status).toBe(303);
    expect(documents.hits(path)).toBe(1); // B used A's copy
    // A whole flow across both: authorized on A, code exchanged on B, refreshed on A.
    const client = { client_id: clientId, redirect_uris: [REDIRECT_URI] };
    const { code, verifier } = await authorizeForCode(a.issuer, client, { resource: RESOURCE });
    const tokens = await exchangeCode(b.issuer, client, code, verifier, RESOURCE);
    expect(tokens.status, JSON.stringify(tokens.body)).toBe(200);
    const refreshed = await tokenRequest(a.issuer, { grant_type: 'refresh_token', refresh_token: tokens.body.refresh_token, client_id: clientId });
    expect(refreshed.status, JSON.stringify(refreshed.body)).toBe(200);
    expect(documents.hits(path)).toBe(1);

    // The client now publishes another redirect URI; both apps keep the cached document until it expires.
    publish(OTHER_REDIRECT);
    for (const app of [a, b]) {
      expect((await startAuthorization(app, clientId)).status).toBe(303);
      expect((await startAuthorization(app, clientId, OTHER_REDIRECT)).status).toBe(400);
    }
    expect(documents.hits(path)).toBe(1);

    // It expires (the shared clock moved on); B refetches it, and A uses B's fresh copy.
    await database.db.updateTable('client_metadata_documents').set({ expires_at: sql<Date>`now() - interval '1 second'` }).where('client_id', '=', clientId).execute();
    expect((await startAuthorization(b, clientId, OTHER_REDIRECT)).status).toBe(303);
    expect(documents.hits(path)).toBe(2);
    expect((await startAuthorization(a, clientId, OTHER_REDIRECT)).status).toBe(303);
    expect((await startAuthorization(a, clientId)).status).toBe(400);
    expect(documents.hits(path)).toBe(2);
  });
});
