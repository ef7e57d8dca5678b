/**
 * Client onboarding (issue 3 §2–4): every client that arrives unannounced is recorded and waits
 * for an administrator; a pending, rejected or suspended client gets no code; approval sets a
 * ceiling that caps every token, on refresh too; suspending revokes everything at once.
 */
import { decodeJwt } from 'jose';
import { sql } from 'kysely';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ClientInputError } from '../../src/clients/clients.service.ts';
import { createTrustPolicy } from '../../src/clients/trust-policy.ts';
import { seed, startTestApp, type TestApp } from '../support/app.ts';
import { startDocumentServer, TEST_DOCUMENT_TRUST, type DocumentServer } from '../support/document-server.ts';
import { authorizationUrl, authorizeForCode, browse, codeAuthorizationUrl, CookieJar, exchangeCode, pkcePair, registerClient, tokenRequest } from '../support/oauth.ts';

const RESOURCE = 'https://mcp.example.com';
const OTHER = 'https://other.example.com/mcp';
const ADMIN = 'admin@example.com';
let app: TestApp;
let documents: DocumentServer;

beforeAll(async () => {
  documents = await startDocumentServer();
  app = await startTestApp({ env: { GATEHOUSE_CLIENT_APPROVAL: 'manual' }, testOnly: { documentFetchTrust: TEST_DOCUMENT_TRUST } });
  await seed(app, { uri: RESOURCE });
  await app.resources.add({ uri: OTHER, name: 'Other MCP', scopes: [{ name: 'other:read', description: 'Read other things' }], defaultScopes: ['other:read'], accessTokenTtl: 600 });
});
afterAll(async () => {
  await app?.close();
  await documents?.close();
});

const scopesOf = (accessToken: string) => String(decodeJwt(accessToken).scope).split(' ').sort();

/** Starts an authorization in a fresh browser and follows Gatehouse's redirects to the first page. */
async function openAuthorization(clientId: string, redirectUri: string, extra: Record<string, string> = {}) {
  const jar = new CookieJar();
  const url = authorizationUrl(app.issuer, {
    client_id: clientId,
    response_type: 'code',
    redirect_uri: redirectUri,
    code_challenge: pkcePair().challenge,
    code_challenge_method: 'S256',
    resource: RESOURCE,
    scope: 'files:read files:write',
    state: 'st+/=',
    ...extra,
  });
  let response = await browse(jar, url);
  while (response.status === 303 || response.status === 302) {
    const location = new URL(response.headers.get('location')!, app.issuer);
    if (location.origin !== new URL(app.issuer).origin) return { jar, response, location, html: '' };
    response = await browse(jar, location);
  }
  return { jar, response, location: undefined, html: await response.text() };
}

async function submitApproval(jar: CookieJar, html: string, decision: 'retry' | 'cancel') {
  const action = /<form method="post" action="([^"]+)"/.exec(html)![1]!;
  const csrf = /name="csrf" value="([^"]*)"/.exec(html)![1]!;
  return browse(jar, new URL(action, app.issuer), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ csrf, decision }),
  });
}

describe('a client registered by DCR', () => {
  let client: Record<string, any>;

  test('is recorded pending, with how, when and from where it arrived; DCR still answers 201', async () => {
    const response = await request(app.issuer)
      .post('/register')
      .set('User-Agent', 'ExampleAgent/1.0')
      .send({ client_name: 'Pending Client', redirect_uris: ['http://127.0.0.1:53682/callback'], token_endpoint_auth_method: 'none', scope: 'files:read openid' });
    expect(response.status).toBe(201);
    client = response.body;
    const record = await app.clients.get(client.client_id);
    expect(record).toMatchObject({ status: 'pending', registrationMethod: 'dcr', userAgent: 'ExampleAgent/1.0', ceiling: {}, name: 'Pending Client' });
    expect(record!.sourceIp).toMatch(/127\.0\.0\.1/);
    expect(record!.createdAt).toBeInstanceOf(Date);
    expect(record!.requested).toEqual({ '*': ['files:read', 'openid'] }); // what it asked for at registration
  });

  test('gets no code: the user sees who is waiting for approval and what it asked for', async () => {
    const { response, html } = await openAuthorization(client.client_id, client.redirect_uris[0]);
    expect(response.status).toBe(200);
    expect(html).toContain('<bdi><strong>Pending Client</strong></bdi> is waiting for approval by your administrator');
    expect(html).toContain('Example MCP');
    expect(html).toContain('Change your files');
    expect(html).not.toContain('name="password"'); // no sign-in before approval
    // The administrator sees what it asked for, at which MCP server.
    expect((await app.clients.get(client.client_id))?.requested).toEqual({ '*': ['files:read', 'openid'], [RESOURCE]: ['files:read', 'files:write'] });
  });

  test('with prompt=none, the browser gets Gatehouse\'s page, not a redirect to the unapproved client (RFC 9700 §4.11.2)', async () => {
    const { location, response, html } = await openAuthorization(client.client_id, client.redirect_uris[0], { prompt: 'none' });
    expect(location).toBeUndefined();
    expect(response.status).toBe(403);
    expect(html).toContain('This application is not approved');
    expect(html).toContain('Pending Client is waiting for approval by your administrator');
  });

  test('"Try again" before approval shows the same page; after approval it continues to sign-in and consent', async () => {
    const first = await openAuthorization(client.client_id, client.redirect_uris[0]);
    let retried = await submitApproval(first.jar, first.html, 'retry');
    let page = await followToPage(first.jar, retried);
    expect(page.html).toContain('is waiting for approval');

    await app.clients.approve(client.client_id, [{ resource: RESOURCE, scopes: ['files:read'] }], ADMIN);
    retried = await submitApproval(first.jar, page.html, 'retry');
    page = await followToPage(first.jar, retried);
    expect(page.html).toContain('name="password"');
  });

  test('tokens never exceed the ceiling, whatever was asked', async () => {
    const { code, verifier } = await authorizeForCode(app.issuer, client, { resource: RESOURCE, scope: 'files:read files:write' });
    const tokens = await exchangeCode(app.issuer, client, code, verifier, RESOURCE);
    expect(tokens.status).toBe(200);
    expect(scopesOf(tokens.body.access_token)).toEqual(['files:read']);
  });

  test('a raised ceiling allows more at the next authorization; a lowered one takes effect at the next refresh', async () => {
    await app.clients.approve(client.client_id, [{ resource: RESOURCE, scopes: ['files:read', 'files:write'] }], ADMIN);
    const { code, verifier } = await authorizeForCode(app.issuer, client, { resource: RESOURCE, scope: 'files:read files:write' });
    const tokens = await exchangeCode(app.issuer, client, code, verifier, RESOURCE);
    expect(scopesOf(tokens.body.access_token)).toEqual(['files:read', 'files:write']);

    await app.clients.approve(client.client_id, [{ resource: RESOURCE, scopes: ['files:read'] }], ADMIN);
    const refreshed = await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: tokens.body.refresh_token, client_id: client.client_id });
    expect(refreshed.status).toBe(200);
    expect(scopesOf(refreshed.body.access_token)).toEqual(['files:read']);

    // An MCP server outside the ceiling: refused at /authorize, and on refresh without burning the token.
    await app.clients.approve(client.client_id, [{ resource: OTHER, scopes: ['other:read'] }], ADMIN);
    const outside = await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: refreshed.body.refresh_token, client_id: client.client_id });
    expect(outside.status).toBe(400);
    expect(outside.body.error).toBe('invalid_grant');
    expect(outside.body.error_description).toMatch(/not approved for Example MCP/);
    const { location } = await openAuthorization(client.client_id, client.redirect_uris[0]);
    expect(location?.searchParams.get('error')).toBe('invalid_target');
    expect(location?.searchParams.get('error_description')).toMatch(/not approved for Example MCP/);

    await app.clients.approve(client.client_id, [{ resource: RESOURCE, scopes: ['files:read'] }], ADMIN);
    const again = await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: refreshed.body.refresh_token, client_id: client.client_id });
    expect(again.status).toBe(200); // the refused refresh burned nothing

    // A refresh that asks only for what the (lowered) ceiling no longer allows: invalid_scope
    // (RFC 6749 §5.2), not 200 with an empty scope (issue 15 §9); and it burns nothing.
    const onlyOutside = await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: again.body.refresh_token, client_id: client.client_id, scope: 'files:write' });
    expect(onlyOutside.status).toBe(400);
    expect(onlyOutside.body.error).toBe('invalid_scope');
    const after = await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: again.body.refresh_token, client_id: client.client_id });
    expect(after.status).toBe(200);
    expect(scopesOf(after.body.access_token)).toEqual(['files:read']);
  });

  test('suspending revokes every grant and refresh token at once, and the user sees why', async () => {
    const { code, verifier } = await authorizeForCode(app.issuer, client, { resource: RESOURCE });
    const tokens = await exchangeCode(app.issuer, client, code, verifier, RESOURCE);
    await app.clients.suspend(client.client_id, ADMIN, 'investigating');
    const remaining = await app.db
      .selectFrom('oidc_payloads')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .where('client_id', '=', client.client_id)
      .where('model', 'in', ['Grant', 'RefreshToken', 'AuthorizationCode'])
      .executeTakeFirstOrThrow();
    expect(Number(remaining.n)).toBe(0);
    const refreshed = await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: tokens.body.refresh_token, client_id: client.client_id });
    expect(refreshed.status).toBe(400);
    expect(refreshed.body.error).toBe('invalid_grant');

    const { jar, response, html } = await openAuthorization(client.client_id, client.redirect_uris[0]);
    expect(response.status).toBe(403);
    expect(html).toContain('has suspended <bdi><strong>Pending Client</strong></bdi>');
    expect(html).not.toContain('value="retry"');
    // Nothing to send it back with: a suspended client is sent nothing, not even an error.
    expect(html).not.toContain('<form');
    expect(html).toContain('Gatehouse has sent nothing back to the application');
    expect(jar).toBeDefined();
  });
});

/** Follows redirects within Gatehouse; stops at a page or at the client's redirect URI. */
async function followToPage(jar: CookieJar, response: Response) {
  while (response.status === 303 || response.status === 302) {
    const location = new URL(response.headers.get('location')!, app.issuer);
    if (location.origin !== new URL(app.issuer).origin) return { location, html: '' };
    response = await browse(jar, location);
  }
  return { location: undefined, html: await response.text() };
}

test('a rejected client sees an error the user understands, and gets nothing', async () => {
  const client = await registerClient(app.issuer, { client_name: 'Unwanted' });
  await app.clients.reject(client.client_id, ADMIN, 'not allowed here');
  const { response, html } = await openAuthorization(client.client_id, client.redirect_uris[0]);
  expect(response.status).toBe(403);
  expect(html).toContain('Your administrator did not approve <bdi><strong>Unwanted</strong></bdi>');
  expect((await app.clients.get(client.client_id))).toMatchObject({ status: 'rejected', statusReason: 'not allowed here', statusChangedBy: ADMIN });
});

test('the waiting page offers no way back to the client, and a forged "cancel" gets a page, not a redirect', async () => {
  const client = await registerClient(app.issuer, { client_name: 'Impatient' });
  const { jar, html } = await openAuthorization(client.client_id, client.redirect_uris[0]);
  expect(html).not.toContain('value="cancel"');
  expect(html).toContain('Gatehouse has sent nothing back to the application');
  const back = await followToPage(jar, await submitApproval(jar, html, 'cancel'));
  expect(back.location).toBeUndefined();
  expect(back.html).toContain('Impatient is waiting for approval by your administrator');
});

describe('a client nobody approved never gets a redirect, whatever the error (issue 15 §1, RFC 9700 §4.11.2)', () => {
  const EVIL = 'https://evil.example/x';
  let clients: Record<'pending' | 'rejected' | 'suspended', Record<string, any>>;
  beforeAll(async () => {
    const register = () => registerClient(app.issuer, { client_name: 'Attacker', redirect_uris: [EVIL] });
    const [pending, rejected, suspended] = [await register(), await register(), await register()];
    await app.clients.reject(rejected.client_id, ADMIN, 'no');
    await app.clients.approve(suspended.client_id, [{ resource: RESOURCE, scopes: ['files:read'] }], ADMIN);
    await app.clients.suspend(suspended.client_id, ADMIN, 'no');
    clients = { pending, rejected, suspended };
  });

  /** One request to /authorize as a hostile link would make it, without following anything. */
  async function authorize(clientId: string, params: Record<string, string | undefined>) {
    const url = codeAuthorizationUrl(app.issuer, { client_id: clientId, redirect_uris: [EVIL] }, { resource: RESOURCE, state: 'attacker-state', ...params });
    for (const [k, v] of [...url.searchParams]) if (v === '') url.searchParams.delete(k);
    return fetch(url, { redirect: 'manual' });
  }

  const CASES: [string, Record<string, string | undefined>][] = [
    ['prompt=none', { prompt: 'none' }],
    ['PKCE missing', { code_challenge: '', code_challenge_method: '' }],
    ['response_type=token', { response_type: 'token' }],
    ['an unknown resource', { resource: 'https://unknown.example.com' }],
    ['response_mode=form_post', { response_mode: 'form_post', prompt: 'none' }],
  ];
  for (const status of ['pending', 'rejected', 'suspended'] as const) {
    test.each(CASES)(`${status}: %s → Gatehouse's page, nothing sent to the redirect URI`, async (_name, params) => {
      const response = await authorize(clients[status].client_id, params);
      const body = await response.text();
      expect(response.headers.get('location') ?? '').not.toContain('evil.example');
      expect(body).not.toContain('evil.example');
      expect(response.status).toBe(403);
      expect(body).toContain('This application is not approved');
    });
  }

  test('an approved client gets its errors at its redirect URI, with iss and state (OAuth 2.1 §4.1.2.1)', async () => {
    const approved = await registerClient(app.issuer, { client_name: 'Approved', redirect_uris: [EVIL] });
    await app.clients.approve(approved.client_id, [{ resource: RESOURCE, scopes: ['files:read'] }], ADMIN);
    const response = await authorize(approved.client_id, { prompt: 'none' });
    expect(response.status).toBe(303);
    const location = new URL(response.headers.get('location')!);
    expect(location.origin + location.pathname).toBe(EVIL);
    expect(location.searchParams.get('error')).toBe('login_required');
    expect(location.searchParams.get('iss')).toBe(app.issuer);
    expect(location.searchParams.get('state')).toBe('attacker-state');
    // Only the query response mode, as discovery says (issue 15 §9); the refusal itself comes in the query.
    for (const mode of ['form_post', 'fragment', 'web_message', 'query.jwt']) {
      const answer = await authorize(approved.client_id, { response_mode: mode });
      expect(answer.status, mode).toBe(303);
      const to = new URL(answer.headers.get('location')!);
      expect(to.origin + to.pathname).toBe(EVIL);
      expect(to.hash).toBe('');
      expect(to.searchParams.get('error')).toBe('unsupported_response_mode');
      expect(to.searchParams.get('iss')).toBe(app.issuer);
    }
    const explicit = await authorize(approved.client_id, { response_mode: 'query', prompt: 'none' });
    expect(new URL(explicit.headers.get('location')!).searchParams.get('error')).toBe('login_required');
    // The README's list: what an approved client is told, before anyone signed in.
    for (const [params, error] of [
      [{ code_challenge: '', code_challenge_method: '' }, 'invalid_request'],
      [{ resource: 'https://unknown.example.com' }, 'invalid_target'],
      [{ response_type: 'token' }, 'unsupported_response_type'],
    ] as const) {
      const answer = await authorize(approved.client_id, params);
      expect(answer.status, JSON.stringify(params)).toBe(303);
      const to = new URL(answer.headers.get('location')!);
      expect(to.origin + to.pathname).toBe(EVIL);
      expect(to.searchParams.get('error') ?? new URLSearchParams(to.hash.slice(1)).get('error')).toBe(error);
    }
  });
});

describe('approval input is checked; a bad decision changes nothing', () => {
  test.each([
    ['an unknown MCP server', [{ resource: 'https://unknown.example.com', scopes: ['x'] }], /not a registered MCP server/],
    ['a scope the server does not offer', [{ resource: RESOURCE, scopes: ['files:delete'] }], /does not offer files:delete/],
    ['no scopes', [{ resource: RESOURCE, scopes: [] }], /at least one scope/],
    ['nothing at all', [], /at least one MCP server/],
  ])('%s', async (_what, entries, message) => {
    const client = await registerClient(app.issuer);
    await expect(app.clients.approve(client.client_id, entries, ADMIN)).rejects.toThrow(ClientInputError);
    await expect(app.clients.approve(client.client_id, entries, ADMIN)).rejects.toThrow(message);
    expect(await app.clients.get(client.client_id)).toMatchObject({ status: 'pending', ceiling: {} });
  });

  test('an unknown client', async () => {
    await expect(app.clients.suspend('no-such-client', ADMIN)).rejects.toThrow(/no client no-such-client/);
  });
});

describe('a client identified by metadata document', () => {
  test('is recorded pending on first use, as cimd, and gets the waiting page', async () => {
    const clientId = documents.url('/pending/client.json');
    documents.serve('/pending/client.json', { body: { client_id: clientId, client_name: 'Documented', redirect_uris: ['http://127.0.0.1/callback'] } });
    const { response, html } = await openAuthorization(clientId, 'http://127.0.0.1:50100/callback');
    expect(response.status).toBe(200);
    expect(html).toContain('<bdi><strong>Documented</strong></bdi> is waiting for approval');
    expect(html).toContain(`<code>${new URL(clientId).host}</code>`); // who publishes it
    expect(await app.clients.get(clientId)).toMatchObject({ status: 'pending', registrationMethod: 'cimd', name: 'Documented' });
  });

  test('goes back to pending when its document lists other redirect URIs, keeping what was approved for the diff', async () => {
    const clientId = documents.url('/changing/client.json');
    const document = { client_id: clientId, client_name: 'Changing', redirect_uris: ['http://127.0.0.1/callback'] };
    documents.serve('/changing/client.json', { body: document });
    await openAuthorization(clientId, 'http://127.0.0.1:50101/callback');
    await app.clients.approve(clientId, [{ resource: RESOURCE, scopes: ['files:read'] }], ADMIN);
    const { code, verifier } = await authorizeForCode(app.issuer, { client_id: clientId, redirect_uris: ['http://127.0.0.1:50101/callback'] }, { resource: RESOURCE });
    expect(code).toBeTruthy();

    documents.serve('/changing/client.json', { body: { ...document, redirect_uris: ['https://changed.example.com/callback'] } });
    await app.db.updateTable('client_metadata_documents').set({ expires_at: sql<Date>`now() - interval '1 second'` }).where('client_id', '=', clientId).execute();
    const { html } = await openAuthorization(clientId, 'https://changed.example.com/callback');
    expect(html).toContain('is waiting for approval');
    expect(await app.clients.get(clientId)).toMatchObject({
      status: 'pending',
      redirectUris: ['https://changed.example.com/callback'],
      approvedRedirectUris: ['http://127.0.0.1/callback'],
      statusReason: expect.stringMatching(/redirect URIs/),
    });
    // The code issued before the change cannot be exchanged by a client that is now pending.
    const exchanged = await exchangeCode(app.issuer, { client_id: clientId, redirect_uris: ['http://127.0.0.1:50101/callback'] }, code, verifier, RESOURCE);
    expect(exchanged.status).toBe(400);
  });
});

describe('trust policies', () => {
  test('a trusted metadata-document host is approved on arrival, and still asks the user', async () => {
    const trusting = await startTestApp({
      database: app.database,
      env: { GATEHOUSE_CLIENT_APPROVAL: 'manual', GATEHOUSE_TRUSTED_CLIENT_HOSTS: `example.org ${new URL(documents.origin).host}` },
      testOnly: { documentFetchTrust: TEST_DOCUMENT_TRUST },
    });
    try {
      const clientId = documents.url('/trusted/client.json');
      documents.serve('/trusted/client.json', { body: { client_id: clientId, client_name: 'Trusted', redirect_uris: ['http://127.0.0.1/callback'] } });
      const documentClient = { client_id: clientId, redirect_uris: ['http://127.0.0.1:50102/callback'] };
      const { code, verifier } = await authorizeForCode(trusting.issuer, documentClient, { resource: RESOURCE, scope: 'files:read files:write' });
      // The ceiling of a trusted host's client: each MCP server's default scopes.
      expect(await app.clients.get(clientId)).toMatchObject({
        status: 'approved',
        ceiling: { [RESOURCE]: ['files:read'], [OTHER]: ['other:read'] },
        statusReason: expect.stringMatching(/trusted metadata-document host, with each MCP server's default scopes/),
      });
      const tokens = await exchangeCode(trusting.issuer, documentClient, code, verifier, RESOURCE);
      expect(scopesOf(tokens.body.access_token)).toEqual(['files:read']);
      // DCR clients are not trusted by that policy.
      const registered = await registerClient(trusting.issuer);
      expect((await app.clients.get(registered.client_id))?.status).toBe('pending');
    } finally {
      await trusting.close();
    }
  });

  test('GATEHOUSE_CLIENT_APPROVAL=automatic approves every new client with no ceiling', async () => {
    const automatic = await startTestApp({ database: app.database, env: { GATEHOUSE_CLIENT_APPROVAL: 'automatic' } });
    try {
      const client = await registerClient(automatic.issuer);
      expect(await app.clients.get(client.client_id)).toMatchObject({ status: 'approved', ceiling: null });
    } finally {
      await automatic.close();
    }
  });
});

test('the trust policy decides: manual keeps everyone pending; trusted hosts get defaults or everything', async () => {
  const defaults = async () => [{ uri: RESOURCE, defaultScopes: ['files:read'] }, { uri: OTHER, defaultScopes: [] }];
  const manual = createTrustPolicy({ approval: 'manual', trustedDocumentHosts: ['claude.ai'], trustedCeiling: 'defaults', defaultScopes: defaults });
  expect(await manual.decide({ method: 'dcr', clientId: 'abc' })).toMatchObject({ status: 'pending', ceiling: {} });
  expect(await manual.decide({ method: 'cimd', clientId: 'https://evil.example/claude.ai/doc.json' })).toMatchObject({ status: 'pending' });
  expect(await manual.decide({ method: 'cimd', clientId: 'https://claude.ai/oauth/mcp-oauth-client-metadata' })).toMatchObject({ status: 'approved', ceiling: { [RESOURCE]: ['files:read'] } });
  const all = createTrustPolicy({ approval: 'manual', trustedDocumentHosts: ['claude.ai'], trustedCeiling: 'all', defaultScopes: defaults });
  expect(await all.decide({ method: 'cimd', clientId: 'https://claude.ai/oauth/mcp-oauth-client-metadata' })).toMatchObject({ status: 'approved', ceiling: null });
});
