/**
 * Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document; MCP 2026-07-28):
 * an https client_id is fetched, validated, guarded against SSRF and cached in PostgreSQL.
 * Documents come from a local https server with the test CA; nothing reaches the internet.
 */
import { sql } from 'kysely';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { seed, startTestApp, type TestApp } from '../support/app.ts';
import { isSpecialUseAddress } from '../../src/clients/safe-fetch.ts';
import { startDocumentServer, TEST_DOCUMENT_TRUST, type DocumentServer } from '../support/document-server.ts';
import { authorizationUrl, authorizeForCode, exchangeCode, pkcePair, REDIRECT_URI, tokenRequest } from '../support/oauth.ts';

const RESOURCE = 'https://mcp.example.com';
let app: TestApp;
let documents: DocumentServer;
let counter = 0;

beforeAll(async () => {
  documents = await startDocumentServer();
  // This file fetches many documents from one local host: lift the per-host limit (tested below).
  app = await startTestApp({ env: { GATEHOUSE_CLIENT_METADATA_FETCHES_PER_HOST: '1000' }, testOnly: { documentFetchTrust: TEST_DOCUMENT_TRUST } });
  await seed(app);
});
afterAll(async () => {
  await app?.close();
  await documents?.close();
});

/** Serves a fresh document at a new path and returns its URL (the client_id). */
function publish(overrides: Record<string, unknown> = {}, route: { headers?: Record<string, string>; status?: number } = {}) {
  const path = `/clients/${++counter}/metadata.json`;
  const clientId = documents.url(path);
  documents.serve(path, {
    ...route,
    body: { client_id: clientId, client_name: `Document client ${counter}`, redirect_uris: [REDIRECT_URI], ...overrides },
  });
  return { clientId, path, client: { client_id: clientId, redirect_uris: [REDIRECT_URI] } };
}

/** GET /authorize for a client; returns Gatehouse's answer without following it. */
async function startAuthorization(clientId: string, redirectUri = REDIRECT_URI) {
  return request(app.issuer)
    .get('/authorize')
    .query({
      client_id: clientId,
      response_type: 'code',
      redirect_uri: redirectUri,
      code_challenge: pkcePair().challenge,
      code_challenge_method: 'S256',
      resource: RESOURCE,
      state: 'xyz',
    });
}

/**
 * The request is refused with invalid_client and Gatehouse's page. A document that came back and is
 * wrong is described on the page (`description`); a fetch refused before any document came back
 * (`{ fetch: description }`) is described only in the audit event and the log — the page says it
 * could not be fetched, so a stranger cannot learn what a name resolves to (issue 15 §6).
 */
async function expectRefused(clientId: string, description: RegExp | { fetch: RegExp }) {
  const response = await startAuthorization(clientId);
  expect(response.status).toBe(400);
  expect(response.headers.location).toBeUndefined(); // never redirect to an unverified client
  expect(response.text).toContain('<code>invalid_client</code>');
  if (description instanceof RegExp) expect(response.text).toMatch(description);
  else {
    expect(response.text).toContain('could not be fetched from its URL');
    expect(response.text).not.toMatch(description.fetch);
    const events = await app.db.selectFrom('audit_events').select('details').where('event', '=', 'client.metadata_refused').where('client_id', '=', clientId).execute();
    expect(events.map((e) => String((e.details as { detail?: string }).detail))).toEqual(expect.arrayContaining([expect.stringMatching(description.fetch)]));
  }
  const cached = await app.db.selectFrom('client_metadata_documents').select('client_id').where('client_id', '=', clientId).execute();
  expect(cached).toEqual([]); // errors and invalid documents are never cached (CIMD §4.4)
}

describe('discovery', () => {
  test('advertises client_id_metadata_document_supported next to the registration endpoint', async () => {
    const response = await request(app.issuer).get('/.well-known/oauth-authorization-server');
    expect(response.body.client_id_metadata_document_supported).toBe(true);
    expect(response.body.registration_endpoint).toBe(`${app.issuer}/register`);
  });

  test('when disabled, the flag is absent and a URL client_id is an unknown client', async () => {
    const off = await startTestApp({ env: { GATEHOUSE_CLIENT_ID_METADATA_DOCUMENTS: 'disabled' }, testOnly: { documentFetchTrust: TEST_DOCUMENT_TRUST } });
    try {
      const metadata = await request(off.issuer).get('/.well-known/oauth-authorization-server');
      expect(metadata.body).not.toHaveProperty('client_id_metadata_document_supported');
      const { clientId, path } = publish();
      const response = await request(off.issuer).get('/authorize').query({ client_id: clientId, response_type: 'code', redirect_uri: REDIRECT_URI });
      expect(response.status).toBe(400);
      expect(response.text).toContain('invalid_client');
      expect(documents.hits(path)).toBe(0);
    } finally {
      await off.close();
    }
  });
});

describe('a valid document', () => {
  test('works end to end — authorize, exchange, refresh — and is fetched once', async () => {
    const { client, path } = publish({ client_uri: 'https://client.example.com' }, { headers: { 'cache-control': 'max-age=3600' } });
    const { code, verifier, callback } = await authorizeForCode(app.issuer, client, { resource: RESOURCE, state: 's1' });
    expect(callback.searchParams.get('iss')).toBe(app.issuer);
    const tokens = await exchangeCode(app.issuer, client, code, verifier, RESOURCE);
    expect(tokens.status).toBe(200);
    const refreshed = await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: tokens.body.refresh_token, client_id: client.client_id });
    expect(refreshed.status).toBe(200);
    expect(refreshed.body.refresh_token).not.toBe(tokens.body.refresh_token);
    expect(documents.hits(path)).toBe(1);
    expect(documents.lastRequestHeaders(path)?.accept).toBe('application/json');
  });

  test('unknown fields and unsupported grant types are tolerated (the way Claude and VS Code publish them)', async () => {
    const { client } = publish({
      grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:jwt-bearer', 'urn:ietf:params:oauth:grant-type:device_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      software_statement: 'ignored',
      x_vendor: { anything: [1, 2] },
    });
    const { code, verifier } = await authorizeForCode(app.issuer, client, { resource: RESOURCE });
    expect((await exchangeCode(app.issuer, client, code, verifier, RESOURCE)).status).toBe(200);
  });

  test('a loopback redirect URI matches on any port even without application_type (RFC 8252 §7.3)', async () => {
    const { clientId } = publish({ redirect_uris: ['http://127.0.0.1/callback'] });
    const response = await startAuthorization(clientId, 'http://127.0.0.1:61234/callback');
    expect(response.status).toBe(303);
    expect(response.headers.location).toMatch(/^\/interaction\//);
    const otherPath = await startAuthorization(clientId, 'http://127.0.0.1:61234/other');
    expect(otherPath.status).toBe(400);
    expect(otherPath.text).toContain('invalid_redirect_uri');
  });

  test('a redirect_uri that is not in the document is refused without a redirect', async () => {
    const { clientId } = publish({ redirect_uris: ['https://client.example.com/callback'] });
    const response = await startAuthorization(clientId, 'https://attacker.example.com/callback');
    expect(response.status).toBe(400);
    expect(response.headers.location).toBeUndefined();
    expect(response.text).toContain('invalid_redirect_uri');
  });
});

describe('documents that are refused', () => {
  test('client_id in the document differs from the URL', async () => {
    const { clientId } = publish({ client_id: 'https://elsewhere.example.com/metadata.json' });
    await expectRefused(clientId, /client_id is not exactly the URL/);
  });

  test('a client_id differing only by a trailing slash is still a mismatch (exact comparison)', async () => {
    const { clientId, path } = publish();
    documents.serve(path, { body: { client_id: `${clientId}/`, client_name: 'x', redirect_uris: [REDIRECT_URI] } });
    await expectRefused(clientId, /client_id is not exactly the URL/);
  });

  test.each<[string, Record<string, unknown>, RegExp]>([
    ['no client_name', { client_name: undefined }, /no client_name/],
    ['no redirect_uris', { redirect_uris: undefined }, /no redirect_uris/],
    ['a shared-secret auth method', { token_endpoint_auth_method: 'client_secret_post' }, /cannot hold a shared secret/],
    ['a client_secret', { client_secret: 'hunter2' }, /must not contain a client_secret/],
    ['an http logo_uri', { logo_uri: 'http://client.example.com/logo.png' }, /logo_uri must be an https URL/],
    ['an http redirect URI on a public host', { redirect_uris: ['http://client.example.com/cb'] }, /invalid: .*uses http on a host that is not loopback/],
    ['a redirect URI with a fragment', { redirect_uris: [REDIRECT_URI, 'https://client.example.com/cb#x'] }, /must not contain a fragment/],
  ])('a document with %s', async (_what, overrides, description) => {
    const { clientId } = publish(overrides);
    await expectRefused(clientId, description);
  });

  test('a document larger than 5 KiB', async () => {
    const { clientId } = publish({ padding: 'x'.repeat(6 * 1024) });
    await expectRefused(clientId, { fetch: /larger than 5120 bytes/ });
  });

  test('a redirect to a document elsewhere is not followed', async () => {
    const { clientId, path } = publish();
    const target = publish();
    documents.serve(path, { status: 302, headers: { location: target.clientId } });
    await expectRefused(clientId, { fetch: /redirect \(302\); redirects are not followed/ });
    expect(documents.hits(target.path)).toBe(0);
  });

  test('a server that answers an error status; the failure is not cached and a fixed document then works', async () => {
    const { clientId, path, client } = publish();
    const good = { client_id: clientId, client_name: 'Flaky', redirect_uris: [REDIRECT_URI] };
    documents.serve(path, { status: 503, body: 'down' });
    await expectRefused(clientId, /HTTP 503/);
    documents.serve(path, { body: good });
    const { code } = await authorizeForCode(app.issuer, client, { resource: RESOURCE });
    expect(code).toBeTruthy();
  });

  test('a document that is not JSON, or not an object', async () => {
    const first = publish();
    documents.serve(first.path, { body: '<html>hello</html>' });
    await expectRefused(first.clientId, /not valid JSON/);
    const second = publish();
    documents.serve(second.path, { body: [1, 2] });
    await expectRefused(second.clientId, /not a JSON object/);
  });

  test('a slow server is abandoned after the time limit', async () => {
    const { clientId, path } = publish();
    documents.serve(path, { delayMs: 5000, body: {} });
    const started = Date.now();
    await expectRefused(clientId, { fetch: /did not answer within 3000 ms/ });
    expect(Date.now() - started).toBeLessThan(4500);
  });

  test.each([
    ['http://localhost/metadata.json', /must use https/],
    ['https://client.example.com', /must have a path/],
    ['https://client.example.com/', /must have a path/],
    ['https://client.example.com/a/../metadata.json', /\. or \.\. segments/],
    ['https://user:pass@client.example.com/metadata.json', /credentials/],
  ])('the client_id %s is not a valid client_id URL', async (clientId, description) => {
    await expectRefused(clientId, description);
  });
});

describe('SSRF protection', () => {
  test.each([
    ['a private IPv4 address', 'https://10.1.2.3/metadata.json', /10\.1\.2\.3 is a private, loopback/],
    ['the cloud metadata address', 'https://169.254.169.254/latest/metadata.json', /169\.254\.169\.254 is a private/],
    ['the unspecified address', 'https://0.0.0.0/metadata.json', /0\.0\.0\.0 is a private/],
    ['a carrier-grade NAT address', 'https://100.64.0.1/metadata.json', /100\.64\.0\.1 is a private/],
    ['an IPv4-mapped IPv6 private address', 'https://[::ffff:192.168.1.1]/metadata.json', /is a private/],
    ['a unique-local IPv6 address', 'https://[fd00::1]/metadata.json', /fd00::1 is a private/],
  ])('%s is never fetched, and the stranger is not told why', async (_what, clientId, description) => {
    await expectRefused(clientId, { fetch: description });
  });

  test('without the test-only trust, a name that resolves to loopback is refused before connecting', async () => {
    const strict = await startTestApp({ database: app.database });
    try {
      const { clientId, path } = publish();
      const response = await request(strict.issuer).get('/authorize').query({ client_id: clientId, response_type: 'code', redirect_uri: REDIRECT_URI });
      expect(response.status).toBe(400);
      // Issue 15 §6: no DNS oracle — the page says it failed; the audit event says why.
      expect(response.text).not.toMatch(/resolves to/);
      expect(response.text).toContain('could not be fetched from its URL');
      const [event] = await app.db.selectFrom('audit_events').select('details').where('event', '=', 'client.metadata_refused').where('client_id', '=', clientId).execute();
      expect(String((event?.details as { detail?: string }).detail)).toMatch(/localhost resolves to (127\.0\.0\.1|::1), a private, loopback/);
      expect(documents.hits(path)).toBe(0);
      for (const [literal, shown] of [['https://127.0.0.1/metadata.json', '127.0.0.1'], ['https://[::1]/metadata.json', '::1']] as const) {
        const refused = await request(strict.issuer).get('/authorize').query({ client_id: literal, response_type: 'code', redirect_uri: REDIRECT_URI });
        expect(refused.status).toBe(400);
        expect(refused.text).not.toContain(shown);
        const [why] = await app.db.selectFrom('audit_events').select('details').where('event', '=', 'client.metadata_refused').where('client_id', '=', literal).execute();
        expect(String((why?.details as { detail?: string }).detail)).toContain(`${shown} is a private, loopback or otherwise special-use address`);
      }
    } finally {
      await strict.close();
    }
  });

  test('production cannot enable the test-only trust', async () => {
    await expect(
      startTestApp({
        database: app.database,
        env: { NODE_ENV: 'production', DATABASE_URL: 'postgres://unused/db', GATEHOUSE_ISSUER: 'https://auth.example.com', GATEHOUSE_TRUST_PROXY: 'true' },
        testOnly: { documentFetchTrust: TEST_DOCUMENT_TRUST },
      }),
    ).rejects.toThrow(/test suite only/);
  });
});

test('fetches per host are limited (counters in PostgreSQL); cached documents and other hosts are not affected', async () => {
  // Its own database, so that no earlier fetch counts.
  const limited = await startTestApp({ env: { GATEHOUSE_CLIENT_METADATA_FETCHES_PER_HOST: '2' }, testOnly: { documentFetchTrust: TEST_DOCUMENT_TRUST } });
  try {
    const authorizeAt = (clientId: string) =>
      request(limited.issuer).get('/authorize').query({ client_id: clientId, response_type: 'code', redirect_uri: REDIRECT_URI, code_challenge: pkcePair().challenge, code_challenge_method: 'S256', resource: RESOURCE });
    await limited.resources.add({ uri: RESOURCE, name: 'Example MCP', scopes: [{ name: 'files:read', description: 'Read' }], defaultScopes: ['files:read'], accessTokenTtl: 600 });
    const first = publish();
    expect((await authorizeAt(first.clientId)).status).toBe(303);
    expect((await authorizeAt(publish().clientId)).status).toBe(303);
    const third = publish();
    const refused = await authorizeAt(third.clientId);
    expect(refused.status).toBe(400);
    expect(refused.text).toMatch(/too many client metadata documents fetched from localhost:\d+ in the last minute: try again in \d+ seconds/);
    expect(documents.hits(third.path)).toBe(0);
    // A cached document needs no fetch, so it still works.
    expect((await authorizeAt(first.clientId)).status).toBe(303);
    expect(documents.hits(first.path)).toBe(1);
    // Another host (127.0.0.1: the test certificate covers it) has its own budget.
    const path = '/limit/other-host.json';
    const onIp = `${documents.origin.replace('localhost', '127.0.0.1')}${path}`;
    documents.serve(path, { body: { client_id: onIp, client_name: 'Elsewhere', redirect_uris: [REDIRECT_URI] } });
    expect((await authorizeAt(onIp)).status).toBe(303);
  } finally {
    await limited.close();
  }
});

describe('the shared cache', () => {
  /** Seconds the cached copy of a document is kept. */
  async function cachedFor(clientId: string): Promise<number> {
    const row = await app.db
      .selectFrom('client_metadata_documents')
      .select([sql<number>`extract(epoch from expires_at - fetched_at)::int`.as('ttl')])
      .where('client_id', '=', clientId)
      .executeTakeFirstOrThrow();
    return row.ttl;
  }

  test('honours max-age across instances sharing the database, and refetches once it expires', async () => {
    const { clientId, path } = publish({}, { headers: { 'cache-control': 'public, max-age=600' } });
    expect((await startAuthorization(clientId)).status).toBe(303);
    expect(await cachedFor(clientId)).toBe(600);

    const second = await startTestApp({ database: app.database, testOnly: { documentFetchTrust: TEST_DOCUMENT_TRUST } });
    try {
      expect((await request(second.issuer).get('/authorize').query({ client_id: clientId, response_type: 'code', redirect_uri: REDIRECT_URI, code_challenge: pkcePair().challenge, code_challenge_method: 'S256', resource: RESOURCE })).status).toBe(303);
      expect(documents.hits(path)).toBe(1);
    } finally {
      await second.close();
    }

    await app.db.updateTable('client_metadata_documents').set({ expires_at: sql<Date>`now() - interval '1 second'` }).where('client_id', '=', clientId).execute();
    expect((await startAuthorization(clientId)).status).toBe(303);
    expect(documents.hits(path)).toBe(2);
  });

  test('no-store and tiny max-age are clamped to the one-minute minimum; huge max-age to one day', async () => {
    const ttlOf = async (cacheControl: string) => {
      const { clientId } = publish({}, { headers: { 'cache-control': cacheControl } });
      expect((await startAuthorization(clientId)).status).toBe(303);
      return cachedFor(clientId);
    };
    expect(await ttlOf('no-store')).toBe(60);
    expect(await ttlOf('max-age=5')).toBe(60);
    expect(await ttlOf('max-age=31536000')).toBe(86400);
  });

  test('concurrent first uses of one document share one fetch', async () => {
    const { clientId, path } = publish();
    documents.serve(path, { delayMs: 200, body: { client_id: clientId, client_name: 'Busy', redirect_uris: [REDIRECT_URI] } });
    const answers = await Promise.all([1, 2, 3, 4, 5].map(() => startAuthorization(clientId)));
    expect(answers.map((a) => a.status)).toEqual([303, 303, 303, 303, 303]);
    expect(documents.hits(path)).toBe(1);
  });
});

test('the authorization URL helper builds what the tests above send', () => {
  expect(authorizationUrl('http://x', { a: '1', b: undefined }).search).toBe('?a=1');
});

describe('the special-use address check', () => {
  test.each([
    ['8.8.8.8', false],
    ['93.184.216.34', false],
    ['100.128.0.1', false],
    ['172.32.0.1', false],
    ['2606:4700::1111', false],
    ['2001:4860:4860::8888', false],
    ['::ffff:8.8.8.8', false],
    ['127.0.0.1', true],
    ['10.255.255.255', true],
    ['172.31.0.1', true],
    ['192.168.0.10', true],
    ['169.254.169.254', true],
    ['100.127.255.255', true],
    ['224.0.0.1', true],
    ['255.255.255.255', true],
    ['0.0.0.0', true],
    ['::', true],
    ['::1', true],
    ['fe80::1', true],
    ['fd12:3456::1', true],
    ['ff02::1', true],
    ['::ffff:127.0.0.1', true],
    ['::ffff:a9fe:a9fe', true], // 169.254.169.254, hex form
    ['64:ff9b::a00:1', true], // NAT64 of 10.0.0.1
    ['::8.8.8.8', true], // IPv4-compatible (::/96, deprecated): never a real public address
    ['::a00:1', true], // IPv4-compatible 10.0.0.1, hex form
    ['::ffff:0:8.8.8.8', true], // IPv4-translated (::ffff:0:0:0/96)
    ['::ffff:0:7f00:1', true], // IPv4-translated 127.0.0.1
    ['not an address', true],
  ])('%s → %s', (address, special) => {
    expect(isSpecialUseAddress(address)).toBe(special);
  });

  test('the test-only trust lets loopback through, and nothing else', () => {
    expect(isSpecialUseAddress('127.0.0.1', { allowLoopback: true })).toBe(false);
    expect(isSpecialUseAddress('::1', { allowLoopback: true })).toBe(false);
    expect(isSpecialUseAddress('10.0.0.1', { allowLoopback: true })).toBe(true);
    expect(isSpecialUseAddress('169.254.169.254', { allowLoopback: true })).toBe(true);
  });
});
