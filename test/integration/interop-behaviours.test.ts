/**
 * The nine behaviours real MCP clients rely on (issue 8), one focused block each. Some are also
 * proven elsewhere in more depth; those places are named. The per-client replays are in
 * test/interop/.
 */
import { decodeJwt } from 'jose';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { seed, startTestApp, type TestApp } from '../support/app.ts';
import { startDocumentServer, TEST_DOCUMENT_TRUST, type DocumentServer } from '../support/document-server.ts';
import {
  authorizationUrl,
  authorizeForCode,
  authorizeInBrowser,
  exchangeCode,
  pkcePair,
  registerClient,
  tokenRequest,
} from '../support/oauth.ts';

const RESOURCE = 'https://mcp.example.com';
let app: TestApp;
let documents: DocumentServer;

beforeAll(async () => {
  documents = await startDocumentServer();
  app = await startTestApp({ testOnly: { documentFetchTrust: TEST_DOCUMENT_TRUST } });
  await seed(app, { uri: RESOURCE });
});
afterAll(async () => {
  await app?.close();
  await documents?.close();
});

/** Starts /authorize and returns Gatehouse's first answer, not followed. */
function authorize(params: Record<string, string | undefined>) {
  const { challenge } = pkcePair();
  return request(app.issuer)
    .get('/authorize')
    .query(Object.fromEntries(Object.entries({ response_type: 'code', code_challenge: challenge, code_challenge_method: 'S256', resource: RESOURCE, ...params }).filter(([, v]) => v !== undefined)));
}

const scopesOf = (accessToken: string) => String(decodeJwt(accessToken).scope).split(' ').sort();

describe('1. loopback redirects on any port, host and path exact, without application_type', () => {
  test('a DCR client that declares `web` but lists a private-use and a loopback URI is native', async () => {
    const client = await registerClient(app.issuer, {
      application_type: 'web',
      redirect_uris: ['cursor://anysphere.cursor-mcp/oauth/callback', 'http://localhost:8787/callback'],
    });
    expect(client.application_type).toBe('native');
    expect((await authorize({ client_id: client.client_id, redirect_uri: 'cursor://anysphere.cursor-mcp/oauth/callback' })).status).toBe(303);
    expect((await authorize({ client_id: client.client_id, redirect_uri: 'http://localhost:40123/callback' })).status).toBe(303);
    // Host and path stay exact: another loopback spelling or path is refused, without a redirect.
    for (const uri of ['http://127.0.0.1:40123/callback', 'http://localhost:40123/callback/', 'http://localhost:40123/other', 'cursor://anysphere.cursor-mcp/oauth/other']) {
      const refused = await authorize({ client_id: client.client_id, redirect_uri: uri });
      expect(refused.status, uri).toBe(400);
      expect(refused.headers.location).toBeUndefined();
    }
  });

  test('a port-less registered loopback URI is used with an ephemeral port (Zed, Claude Code, Codex)', async () => {
    const client = await registerClient(app.issuer, { redirect_uris: ['http://127.0.0.1/callback'] });
    expect(client).not.toHaveProperty('application_type', 'web');
    const { callback } = await authorizeInBrowser(
      authorizationUrl(app.issuer, { client_id: client.client_id, response_type: 'code', redirect_uri: 'http://127.0.0.1:61999/callback', code_challenge: pkcePair().challenge, code_challenge_method: 'S256', resource: RESOURCE }),
    );
    expect(callback.host).toBe('127.0.0.1:61999');
    expect(callback.searchParams.get('code')).toBeTruthy();
  });
});

describe('2. unknown metadata is tolerated; unsupported array values are filtered', () => {
  test('DCR: unknown fields, unknown scopes and extra grant types register (also registration.test.ts)', async () => {
    const client = await registerClient(app.issuer, {
      scope: 'openid profile unknown:scope files:read',
      grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
      token_endpoint_auth_methods_supported: ['none', 'private_key_jwt'],
      code_challenge_methods_supported: ['S256'],
      x_anything: { nested: true },
    });
    expect(client.grant_types).toEqual(['authorization_code', 'refresh_token']);
    expect(client).not.toHaveProperty('x_anything');
  });

  test('metadata documents: the same leniency (also client-metadata-documents.test.ts)', async () => {
    const clientId = documents.url('/behaviour-2/client.json');
    documents.serve('/behaviour-2/client.json', {
      body: {
        client_id: clientId,
        client_name: 'Lenient',
        redirect_uris: ['http://127.0.0.1/callback'],
        grant_types: ['authorization_code', 'urn:ietf:params:oauth:grant-type:jwt-bearer'],
        token_endpoint_auth_method: 'none',
        token_endpoint_auth_methods_supported: ['none', 'private_key_jwt'],
        scope: 'openid profile email',
        unknown_field: 42,
      },
    });
    const client = { client_id: clientId, redirect_uris: ['http://127.0.0.1:50001/callback'] };
    const { code, verifier } = await authorizeForCode(app.issuer, client, { resource: RESOURCE });
    const tokens = await exchangeCode(app.issuer, client, code, verifier, RESOURCE);
    expect(tokens.status).toBe(200);
    expect(tokens.body.refresh_token).toBeTruthy(); // refresh_token added to a code-only document
  });

  test('discovery advertises exactly the grant types and client authentication methods that work', async () => {
    const { body } = await request(app.issuer).get('/.well-known/oauth-authorization-server');
    expect(body.grant_types_supported).toEqual(['authorization_code', 'refresh_token']);
    expect([...body.token_endpoint_auth_methods_supported].sort()).toEqual(['client_secret_basic', 'client_secret_post', 'none', 'private_key_jwt']);
  });
});

describe('3. client authentication as registered', () => {
  test('a client_secret_post client gets that method echoed, and must present its secret', async () => {
    const client = await registerClient(app.issuer, { token_endpoint_auth_method: 'client_secret_post' });
    expect(client.token_endpoint_auth_method).toBe('client_secret_post');
    expect(typeof client.client_secret).toBe('string');
    const { code, verifier } = await authorizeForCode(app.issuer, client, { resource: RESOURCE });
    const params = { grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: client.redirect_uris[0], resource: RESOURCE };
    // Without the secret, or with a wrong one, it is refused, and the code survives for the real client.
    const anonymous = await tokenRequest(app.issuer, { ...params, client_id: client.client_id });
    expect(anonymous.status).toBe(401);
    expect(anonymous.body.error).toBe('invalid_client');
    const wrong = await tokenRequest(app.issuer, { ...params, client_id: client.client_id, client_secret: `${client.client_secret}x` });
    expect(wrong.status).toBe(401);
    // oidc-provider accepts the same shared secret in the Authorization header too (the 1.x
    // TypeScript SDK sends Basic whenever the server lists it, whatever was registered).
    const basic = await tokenRequest(app.issuer, params, {
      authorization: `Basic ${Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64')}`,
    });
    expect(basic.status).toBe(200);
  });

  test('a client_secret_basic client gets that method echoed', async () => {
    const client = await registerClient(app.issuer, { token_endpoint_auth_method: 'client_secret_basic' });
    expect(client.token_endpoint_auth_method).toBe('client_secret_basic');
  });
  // A metadata document offering private_key_jwt and none: test/interop/chatgpt.test.ts.
});

describe('4. resource canonicalisation (in depth: resource-indicators.test.ts)', () => {
  test('trailing slash, upper-case scheme and host, and a repeated resource all mean the registered one', async () => {
    const client = await registerClient(app.issuer);
    const { code, verifier } = await authorizeForCode(app.issuer, client, { resource: 'HTTPS://MCP.Example.COM/' });
    const tokens = await exchangeCode(app.issuer, client, code, verifier, ['https://mcp.example.com/', 'https://MCP.example.com']);
    expect(tokens.status).toBe(200);
    expect(decodeJwt(tokens.body.access_token).aud).toBe(RESOURCE);
  });
});

describe('5. resource is optional on refresh, and at /authorize with one resource', () => {
  test('a refresh without resource uses the grant\'s resource', async () => {
    const client = await registerClient(app.issuer);
    const { code, verifier } = await authorizeForCode(app.issuer, client, { resource: undefined });
    const tokens = await exchangeCode(app.issuer, client, code, verifier, undefined);
    expect(decodeJwt(tokens.body.access_token).aud).toBe(RESOURCE);
    const refreshed = await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: tokens.body.refresh_token, client_id: client.client_id });
    expect(refreshed.status).toBe(200);
    expect(decodeJwt(refreshed.body.access_token).aud).toBe(RESOURCE);
  });
  // With several resources and none named: invalid_target (authorization-code.test.ts).
});

describe('6. scopes are hints', () => {
  test('every advertised scope plus openid and offline_access: the intersection is granted', async () => {
    const client = await registerClient(app.issuer);
    const { code, verifier } = await authorizeForCode(app.issuer, client, { resource: RESOURCE, scope: 'openid profile email offline_access files:read files:write' });
    const tokens = await exchangeCode(app.issuer, client, code, verifier, RESOURCE);
    expect(scopesOf(tokens.body.access_token)).toEqual(['files:read', 'files:write']);
    expect(tokens.body).not.toHaveProperty('id_token');
  });

  test('a scope in the registration body is not an allow-list: a later step-up gets more', async () => {
    const client = await registerClient(app.issuer, { scope: 'files:read' });
    const first = await authorizeForCode(app.issuer, client, { resource: RESOURCE, scope: 'files:read' });
    expect(scopesOf((await exchangeCode(app.issuer, client, first.code, first.verifier, RESOURCE)).body.access_token)).toEqual(['files:read']);
    const stepUp = await authorizeForCode(app.issuer, client, { resource: RESOURCE, scope: 'files:read files:write' });
    expect(scopesOf((await exchangeCode(app.issuer, client, stepUp.code, stepUp.verifier, RESOURCE)).body.access_token)).toEqual(['files:read', 'files:write']);
  });

  test('only unknown scopes: the resource\'s defaults, not invalid_scope', async () => {
    const client = await registerClient(app.issuer);
    const { code, verifier } = await authorizeForCode(app.issuer, client, { resource: RESOURCE, scope: 'claudeai' });
    expect(scopesOf((await exchangeCode(app.issuer, client, code, verifier, RESOURCE)).body.access_token)).toEqual(['files:read']);
  });
});

describe('7. refresh tokens without prompt=consent', () => {
  test.each([
    ['no offline_access', 'files:read'],
    ['offline_access without prompt=consent', 'files:read offline_access'],
  ])('%s: a rotating refresh token is issued', async (_what, scope) => {
    const client = await registerClient(app.issuer);
    const { code, verifier } = await authorizeForCode(app.issuer, client, { resource: RESOURCE, scope });
    const tokens = await exchangeCode(app.issuer, client, code, verifier, RESOURCE);
    expect(typeof tokens.body.refresh_token).toBe('string');
    const refreshed = await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: tokens.body.refresh_token, client_id: client.client_id });
    expect(refreshed.body.refresh_token).not.toBe(tokens.body.refresh_token);
  });
});

describe('8. callback fidelity', () => {
  test.each([
    ['standard base64 (VS Code)', 'gXVXo0/iMD8WMolDHKxSTg=='],
    ['a URL-encoded URI (VS Code\'s URL-handler flow)', 'vscode://dynamicauthprovider/mcp.example.com/authorize?nonce=0f1e2d3c4b5a69788796a5b4c3d2e1f0'],
    ['base64 JSON (Cursor)', Buffer.from('{"id":"user-server","owner":{"workspaceId":"empty-window"},"attemptId":"a?b>c"}').toString('base64')],
    ['percent signs and spaces', '100% sure & done'],
  ])('state as %s comes back byte for byte, with iss', async (_what, state) => {
    const client = await registerClient(app.issuer);
    const { callback } = await authorizeForCode(app.issuer, client, { resource: RESOURCE, state });
    expect(callback.searchParams.get('state')).toBe(state);
    expect(callback.searchParams.get('iss')).toBe(app.issuer);
    expect(callback.searchParams.get('code')).toMatch(/^[A-Za-z0-9\-._~]+$/);
  });

  test('state is optional (the TypeScript SDK example sends none)', async () => {
    const client = await registerClient(app.issuer);
    const { callback } = await authorizeForCode(app.issuer, client, { resource: RESOURCE, state: undefined });
    expect(callback.searchParams.has('state')).toBe(false);
    expect(callback.searchParams.get('iss')).toBe(app.issuer);
  });

  test('an error response carries iss and the state too', async () => {
    const client = await registerClient(app.issuer);
    const state = 'a+b/c=';
    const { callback } = await authorizeInBrowser(
      authorizationUrl(app.issuer, { client_id: client.client_id, response_type: 'code', redirect_uri: client.redirect_uris[0], code_challenge: pkcePair().challenge, code_challenge_method: 'S256', resource: RESOURCE, state }),
      { decision: 'deny' },
    );
    expect(callback.searchParams.get('error')).toBe('access_denied');
    expect(callback.searchParams.get('state')).toBe(state);
    expect(callback.searchParams.get('iss')).toBe(app.issuer);
  });
});

describe('9. metadata documents and DCR side by side', () => {
  test('discovery offers both, always with S256, whatever MCP-Protocol-Version the client sends', async () => {
    for (const version of [undefined, '2024-11-05', '2025-03-26', '2025-06-18', '2025-11-25', 'garbage']) {
      const response = await request(app.issuer)
        .get('/.well-known/oauth-authorization-server')
        .set(version ? { 'MCP-Protocol-Version': version } : {});
      expect(response.status).toBe(200);
      expect(response.body.registration_endpoint).toBe(`${app.issuer}/register`);
      expect(response.body.client_id_metadata_document_supported).toBe(true);
      expect(response.body.code_challenge_methods_supported).toEqual(['S256']);
    }
  });

  test('a registered client and a metadata-document client both complete the flow on one server', async () => {
    const registered = await registerClient(app.issuer);
    const clientId = documents.url('/behaviour-9/client.json');
    documents.serve('/behaviour-9/client.json', { body: { client_id: clientId, client_name: 'Documented', redirect_uris: ['http://127.0.0.1/cb'] } });
    for (const client of [registered, { client_id: clientId, redirect_uris: ['http://127.0.0.1:50002/cb'] }]) {
      const { code, verifier } = await authorizeForCode(app.issuer, client, { resource: RESOURCE });
      expect((await exchangeCode(app.issuer, client, code, verifier, RESOURCE)).status).toBe(200);
    }
  });
});
