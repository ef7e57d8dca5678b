/**
 * Dynamic client registration (RFC 7591) at POST /register, over real HTTP with a real database:
 * what MCP clients send, what Gatehouse must refuse, and that refusals store nothing.
 */
import { createHash, randomBytes } from 'node:crypto';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { seed, startTestApp, type TestApp } from '../support/app.ts';
import { authorizationUrl, authorizeInBrowser, browse, CookieJar, obtainTokens, pkcePair, REDIRECT_URI, tokenRequest } from '../support/oauth.ts';

const RESOURCE = 'https://mcp.example.com';

let app: TestApp;
beforeAll(async () => {
  app = await startTestApp();
  await seed(app);
});
afterAll(() => app?.close());

function register(body: unknown) {
  return request(app.issuer).post('/register').set('Content-Type', 'application/json').send(JSON.stringify(body));
}

async function countClients(): Promise<number> {
  const row = await app.db
    .selectFrom('clients')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

function authorizeParams(clientId: string, redirectUri: string, challenge: string, state = randomBytes(8).toString('hex')) {
  return {
    client_id: clientId,
    response_type: 'code',
    redirect_uri: redirectUri,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    state,
    resource: RESOURCE,
  };
}

/** Runs sign-in and consent for a client and returns the code and the verifier that goes with it. */
async function obtainCode(clientId: string, redirectUri: string) {
  const { verifier, challenge } = pkcePair();
  const state = randomBytes(8).toString('hex');
  const { callback } = await authorizeInBrowser(authorizationUrl(app.issuer, authorizeParams(clientId, redirectUri, challenge, state)));
  expect(callback.searchParams.get('error')).toBeNull();
  expect(callback.searchParams.get('state')).toBe(state);
  expect(callback.searchParams.get('iss')).toBe(app.issuer);
  const code = callback.searchParams.get('code');
  expect(code).toBeTruthy();
  return { code: code!, verifier, callback };
}

/** An authorization request Gatehouse must refuse without redirecting anywhere. */
async function expectRefusedRedirect(clientId: string, redirectUri: string) {
  const { challenge } = pkcePair();
  const response = await browse(new CookieJar(), authorizationUrl(app.issuer, authorizeParams(clientId, redirectUri, challenge)));
  expect(response.status).toBe(400);
  expect(response.headers.get('location')).toBeNull();
  expect(await response.text()).toContain('invalid_redirect_uri');
}

function basic(clientId: string, secret: string): string {
  return `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`).toString('base64')}`;
}

describe('accepted registrations', () => {
  test('a public client gets a client_id and no secret', async () => {
    const response = await register({ client_name: 'Public MCP client', redirect_uris: [REDIRECT_URI], token_endpoint_auth_method: 'none' });
    expect(response.status).toBe(201);
    expect(response.headers['content-type']).toMatch(/^application\/json/);
    expect(response.headers['cache-control']).toMatch(/no-store/);
    expect(response.body).toMatchObject({
      client_name: 'Public MCP client',
      redirect_uris: [REDIRECT_URI],
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
    });
    expect(typeof response.body.client_id).toBe('string');
    expect(response.body).not.toHaveProperty('client_secret');
    expect(response.body).not.toHaveProperty('client_secret_expires_at');
    const row = await app.db.selectFrom('clients').selectAll().where('client_id', '=', response.body.client_id).executeTakeFirst();
    expect(row?.client_secret_hash).toBeNull();
  });

  test('a client that leaves out token_endpoint_auth_method is public (the profile default): no secret', async () => {
    const response = await register({ client_name: 'Quiet client', redirect_uris: [REDIRECT_URI] });
    expect(response.status).toBe(201);
    expect(response.body.token_endpoint_auth_method).toBe('none');
    expect(response.body).not.toHaveProperty('client_secret');
    const row = await app.db.selectFrom('clients').selectAll().where('client_id', '=', response.body.client_id).executeTakeFirst();
    expect(row?.client_secret_hash).toBeNull();
  });

  describe.each(['client_secret_basic', 'client_secret_post'] as const)('a confidential client with %s', (method) => {
    test('gets a secret, stored only as its SHA-256 digest, which works at /token', async () => {
      const response = await register({ client_name: `Confidential (${method})`, redirect_uris: [REDIRECT_URI], token_endpoint_auth_method: method });
      expect(response.status).toBe(201);
      expect(response.body.token_endpoint_auth_method).toBe(method);
      const clientId = response.body.client_id as string;
      const secret = response.body.client_secret as string;
      expect(typeof secret).toBe('string');
      expect(secret.length).toBeGreaterThanOrEqual(32);
      expect(response.body.client_secret_expires_at).toBe(0);

      // At rest: only the digest, never the secret anywhere in the row.
      const row = await app.db.selectFrom('clients').selectAll().where('client_id', '=', clientId).executeTakeFirstOrThrow();
      expect(row.client_secret_hash).toBe(createHash('sha256').update(secret).digest('hex'));
      expect(row.client_secret_enc).toBeNull();
      expect(JSON.stringify(row.metadata)).not.toContain(secret);
      expect(row.metadata).not.toHaveProperty('client_secret');
      expect(JSON.stringify(row)).not.toContain(secret);

      // The secret authenticates the client for an authorization code exchange.
      const { code, verifier } = await obtainCode(clientId, REDIRECT_URI);
      const params = { grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: REDIRECT_URI, resource: RESOURCE };

      const wrong = await tokenRequest(
        app.issuer,
        method === 'client_secret_basic' ? params : { ...params, client_id: clientId, client_secret: `${secret}x` },
        method === 'client_secret_basic' ? { authorization: basic(clientId, `${secret}x`) } : {},
      );
      expect(wrong.status).toBe(401);
      expect(wrong.body.error).toBe('invalid_client');

      const tokens = await tokenRequest(
        app.issuer,
        method === 'client_secret_basic' ? params : { ...params, client_id: clientId, client_secret: secret },
        method === 'client_secret_basic' ? { authorization: basic(clientId, secret) } : {},
      );
      expect(tokens.status).toBe(200);
      expect(tokens.body.token_type).toMatch(/^bearer$/i);
      expect(tokens.body.access_token).toBeTruthy();
    });
  });

  test('a confidential client cannot authenticate without its secret', async () => {
    const response = await register({ redirect_uris: [REDIRECT_URI], token_endpoint_auth_method: 'client_secret_basic' });
    expect(response.status).toBe(201);
    const clientId = response.body.client_id as string;
    const { code, verifier } = await obtainCode(clientId, REDIRECT_URI);
    const tokens = await tokenRequest(app.issuer, {
      grant_type: 'authorization_code',
      code,
      code_verifier: verifier,
      redirect_uri: REDIRECT_URI,
      resource: RESOURCE,
      client_id: clientId,
    });
    expect(tokens.status).toBe(401);
    expect(tokens.body.error).toBe('invalid_client');
  });

  test.each(['http://127.0.0.1/cb', 'http://localhost:8080/cb', 'http://[::1]/cb'])(
    'loopback redirect URI %s registers a native client without application_type',
    async (uri) => {
      const response = await register({ client_name: 'Loopback', redirect_uris: [uri], token_endpoint_auth_method: 'none' });
      expect(response.status).toBe(201);
      expect(response.body.redirect_uris).toEqual([uri]);
      expect(response.body.application_type).toBe('native');
    },
  );

  test('a loopback redirect URI matches on any port (RFC 8252 §7.3), but not on another path or host', async () => {
    const response = await register({ client_name: 'Loopback ports', redirect_uris: ['http://127.0.0.1/callback'], token_endpoint_auth_method: 'none' });
    expect(response.status).toBe(201);
    const clientId = response.body.client_id as string;

    const { code, verifier, callback } = await obtainCode(clientId, 'http://127.0.0.1:5555/callback');
    expect(`${callback.origin}${callback.pathname}`).toBe('http://127.0.0.1:5555/callback');
    const tokens = await tokenRequest(app.issuer, {
      grant_type: 'authorization_code',
      code,
      code_verifier: verifier,
      redirect_uri: 'http://127.0.0.1:5555/callback',
      client_id: clientId,
      resource: RESOURCE,
    });
    expect(tokens.status).toBe(200);

    await expectRefusedRedirect(clientId, 'http://127.0.0.1:5555/other');
    await expectRefusedRedirect(clientId, 'http://127.0.0.1:5555/callback/extra');
    await expectRefusedRedirect(clientId, 'http://localhost:5555/callback');
    await expectRefusedRedirect(clientId, 'http://[::1]:5555/callback');
    await expectRefusedRedirect(clientId, 'https://127.0.0.1:5555/callback');
    await expectRefusedRedirect(clientId, 'http://evil.example:5555/callback');
  });

  test.each([
    'cursor://anysphere.cursor-retrieval/oauth/user-mcp/callback',
    'vscode://vscode.github-authentication/did-authenticate',
    'com.example.app:/oauth2redirect',
  ])('private-use scheme %s registers a native client', async (uri) => {
    const response = await register({ client_name: 'Desktop app', redirect_uris: [uri], token_endpoint_auth_method: 'none' });
    expect(response.status).toBe(201);
    expect(response.body.redirect_uris).toEqual([uri]);
    expect(response.body.application_type).toBe('native');
  });

  test.each([
    'ms-msdt:/id?PCWDiagnostic',
    'search-ms:query=x',
    'ms-officecmd:launch',
    'ms-word:ofe|u|https://evil.example/x.docx',
    'view-source:https://evil.example/',
    'jar:https://evil.example/x.jar!/',
    'mailto:someone@example.com',
    'x-app://claude.ai/api/mcp/auth_callback',
    'myapp://callback',
  ])('the single-word scheme of %s is refused: not reverse-domain, not a known MCP client (RFC 8252 §7.1)', async (uri) => {
    const before = await app.db.selectFrom('clients').select('client_id').execute();
    const response = await register({ client_name: 'Handler', redirect_uris: [uri], token_endpoint_auth_method: 'none' });
    expect(response.status).toBe(400);
    expect(response.body.error).toBe('invalid_redirect_uri');
    expect(response.body.error_description).toMatch(/reverse-domain scheme/);
    expect(await app.db.selectFrom('clients').select('client_id').execute()).toHaveLength(before.length);
  });

  test.each(['com.example.app:/cb', 'io.github.someone.mcp-client://oauth', 'vscode-insiders://vscode.github-authentication/did-authenticate', 'windsurf://codeium.windsurf/cb', 'claude://claude.ai/cb'])(
    'the private-use scheme of %s is accepted',
    async (uri) => {
      const response = await register({ client_name: 'Desktop app', redirect_uris: [uri], token_endpoint_auth_method: 'none' });
      expect(response.status).toBe(201);
    },
  );

  test('a private-use redirect URI receives the code', async () => {
    const uri = 'cursor://anysphere.cursor-retrieval/oauth/user-mcp/callback';
    const response = await register({ client_name: 'Cursor', redirect_uris: [uri], token_endpoint_auth_method: 'none' });
    expect(response.status).toBe(201);
    const { callback } = await obtainCode(response.body.client_id, uri);
    expect(`${callback.protocol}//${callback.host}${callback.pathname}`).toBe(uri);
  });

  test('an https redirect URI registers a web client and must match exactly', async () => {
    const uri = 'https://app.example.com/oauth/callback';
    const response = await register({ client_name: 'Web app', redirect_uris: [uri], token_endpoint_auth_method: 'none' });
    expect(response.status).toBe(201);
    expect(response.body.application_type).toBe('web');
    const clientId = response.body.client_id as string;

    const { callback } = await obtainCode(clientId, uri);
    expect(`${callback.origin}${callback.pathname}`).toBe(uri);

    await expectRefusedRedirect(clientId, 'https://app.example.com:8443/oauth/callback');
    await expectRefusedRedirect(clientId, 'https://app.example.com/oauth/callback/');
    await expectRefusedRedirect(clientId, 'https://app.example.com/oauth/callback?x=1');
    await expectRefusedRedirect(clientId, 'https://APP.example.com/oauth/other');
    await expectRefusedRedirect(clientId, 'http://app.example.com/oauth/callback');
  });

  // Issue 8 §2: Claude's and VS Code's metadata list grants we do not offer (jwt-bearer,
  // device_code); a DCR body doing the same registers with those values dropped.
  test('unsupported grant and response types next to supported ones are dropped, not fatal', async () => {
    const response = await register({
      client_name: 'Greedy client',
      redirect_uris: [REDIRECT_URI],
      token_endpoint_auth_method: 'none',
      grant_types: [
        'authorization_code',
        'refresh_token',
        'urn:ietf:params:oauth:grant-type:jwt-bearer',
        'urn:ietf:params:oauth:grant-type:device_code',
        'implicit',
        'client_credentials',
      ],
      response_types: ['code', 'token', 'code id_token'],
    });
    expect(response.status).toBe(201);
    expect(response.body.grant_types).toEqual(['authorization_code', 'refresh_token']);
    expect(response.body.response_types).toEqual(['code']);
    const stored = await app.db.selectFrom('clients').select('metadata').where('client_id', '=', response.body.client_id).executeTakeFirstOrThrow();
    expect(stored.metadata.grant_types).toEqual(['authorization_code', 'refresh_token']);
    // …and the client works: it gets a code and a refresh token.
    const { tokens } = await obtainTokens(app.issuer, { client: response.body });
    expect(tokens.status).toBe(200);
    expect(tokens.body.refresh_token).toBeTruthy();
  });

  test('unknown extra fields in the body are tolerated', async () => {
    const response = await register({
      client_name: 'Chatty client',
      redirect_uris: [REDIRECT_URI],
      token_endpoint_auth_method: 'none',
      software_statement_hint: 'whatever',
      x_vendor: { nested: [1, 2, 3] },
      logo_uri: 'https://client.example.com/logo.png',
      software_id: 'com.example.chatty',
      software_version: '1.2.3',
    });
    expect(response.status).toBe(201);
    expect(response.body.client_id).toBeTruthy();
    expect(response.body.software_id).toBe('com.example.chatty');
  });
});

describe('refused registrations store nothing', () => {
  // The description must say what is wrong with the URI, not oidc-provider's authorization-time
  // message "redirect_uri did not match any of the client's registered redirect_uris".
  const invalidRedirectUris: Array<[string, string, RegExp]> = [
    ['a fragment', 'http://127.0.0.1/cb#frag', /fragment/i],
    ['a wildcard host', 'https://*.example.com/cb', /wildcard/i],
    ['a wildcard path', 'http://127.0.0.1/cb/*', /wildcard/i],
    ['javascript:', 'javascript:alert(1)', /javascript/i],
    ['data:', 'data:text/html,x', /\bdata\b/i],
    ['file:', 'file:///etc/passwd', /\bfile\b/i],
    ['a malformed URI', 'http://', /valid/i],
    ['a relative URI', '/cb', /absolute/i],
    ['http on a non-loopback host', 'http://example.com/cb', /loopback/i],
  ];

  test.each(invalidRedirectUris)('redirect URI with %s → invalid_redirect_uri', async (_what, uri, reason) => {
    const before = await countClients();
    // Also next to a valid URI: one bad URI spoils the registration.
    for (const redirect_uris of [[uri], [REDIRECT_URI, uri]]) {
      const response = await register({ client_name: 'Bad', redirect_uris, token_endpoint_auth_method: 'none' });
      expect(response.status).toBe(400);
      expect(response.headers['content-type']).toMatch(/^application\/json/);
      expect(response.body.error).toBe('invalid_redirect_uri');
      expect(response.body).not.toHaveProperty('client_id');
      expect(await countClients()).toBe(before);
      expect(typeof response.body.error_description).toBe('string');
      expect(response.body.error_description).not.toMatch(/did not match any of the client's registered/);
      expect(response.body.error_description).toMatch(reason);
    }
  });

  // oidc-provider reports every problem whose description starts with "redirect_uris" as
  // invalid_redirect_uri (lib/helpers/errors.js, InvalidClientMetadata), which RFC 7591 §3.2.2 allows.
  test.each<[string, Record<string, unknown>]>([
    ['missing redirect_uris', { client_name: 'No URIs', token_endpoint_auth_method: 'none' }],
    ['empty redirect_uris', { redirect_uris: [], token_endpoint_auth_method: 'none' }],
    ['redirect_uris not an array', { redirect_uris: 'http://127.0.0.1/cb', token_endpoint_auth_method: 'none' }],
    ['redirect_uris as an object', { redirect_uris: { 0: 'http://127.0.0.1/cb' }, token_endpoint_auth_method: 'none' }],
    ['redirect_uris with a non-string', { redirect_uris: [42], token_endpoint_auth_method: 'none' }],
  ])('%s → invalid_redirect_uri', async (_what, body) => {
    const before = await countClients();
    const response = await register(body);
    expect(response.status).toBe(400);
    expect(response.body.error).toBe('invalid_redirect_uri');
    expect(await countClients()).toBe(before);
    expect(response.body.error_description).toMatch(/^redirect_uris /);
  });

  test.each<[string, Record<string, unknown>]>([
    ['grant_types with only client_credentials', { redirect_uris: [REDIRECT_URI], grant_types: ['client_credentials'] }],
    ['grant_types with only implicit and password', { redirect_uris: [REDIRECT_URI], grant_types: ['implicit', 'password'] }],
    ['grant_types without authorization_code', { redirect_uris: [REDIRECT_URI], grant_types: ['refresh_token'] }],
    ['response_types token', { redirect_uris: [REDIRECT_URI], response_types: ['token'] }],
    ['response_types code token', { redirect_uris: [REDIRECT_URI], response_types: ['code token'] }],
    ['an unsupported token_endpoint_auth_method', { redirect_uris: [REDIRECT_URI], token_endpoint_auth_method: 'tls_client_auth' }],
  ])('%s → invalid_client_metadata', async (_what, body) => {
    const before = await countClients();
    const response = await register(body);
    expect(response.status).toBe(400);
    expect(response.body.error).toBe('invalid_client_metadata');
    expect(typeof response.body.error_description).toBe('string');
    expect(response.body.error_description).not.toBe('');
    expect(await countClients()).toBe(before);
  });

  test.each<[string, string, string]>([
    ['a text/plain body', 'text/plain', 'redirect_uris=http://127.0.0.1/cb'],
    ['a form body', 'application/x-www-form-urlencoded', 'redirect_uris=http%3A%2F%2F127.0.0.1%2Fcb'],
    ['malformed JSON', 'application/json', '{"redirect_uris": ["http://127.0.0.1/cb"'],
    ['a JSON array', 'application/json', '["http://127.0.0.1/cb"]'],
    ['a JSON string', 'application/json', '"http://127.0.0.1/cb"'],
  ])('%s → invalid_request', async (_what, contentType, body) => {
    const before = await countClients();
    const response = await request(app.issuer).post('/register').set('Content-Type', contentType).send(body);
    expect(response.status).toBe(400);
    expect(response.body.error).toBe('invalid_request');
    expect(typeof response.body.error_description).toBe('string');
    expect(response.body.error_description).not.toBe('');
    expect(await countClients()).toBe(before);
  });
});

describe('CORS for browser-based clients', () => {
  test('the preflight is answered', async () => {
    const response = await request(app.issuer)
      .options('/register')
      .set('Origin', 'http://localhost:6274')
      .set('Access-Control-Request-Method', 'POST')
      .set('Access-Control-Request-Headers', 'content-type');
    expect(response.status).toBe(204);
    expect(response.headers['access-control-allow-origin']).toBe('*');
    expect(response.headers['access-control-allow-methods']).toMatch(/\bPOST\b/);
    expect(response.headers['access-control-allow-headers']?.toLowerCase()).toContain('content-type');
  });

  test('the registration response, and an error, can be read cross-origin', async () => {
    const ok = await register({ redirect_uris: [REDIRECT_URI], token_endpoint_auth_method: 'none' }).set('Origin', 'http://localhost:6274');
    expect(ok.status).toBe(201);
    expect(ok.headers['access-control-allow-origin']).toBe('*');

    const bad = await register({ redirect_uris: ['http://example.com/cb'] }).set('Origin', 'http://localhost:6274');
    expect(bad.status).toBe(400);
    expect(bad.headers['access-control-allow-origin']).toBe('*');
  });
});

describe('with registration disabled', () => {
  let closed: TestApp;
  beforeAll(async () => {
    closed = await startTestApp({ env: { GATEHOUSE_REGISTRATION: 'disabled' } });
  });
  afterAll(() => closed?.close());

  test('POST /register is not there and nothing is stored', async () => {
    const response = await request(closed.issuer)
      .post('/register')
      .set('Content-Type', 'application/json')
      .send(JSON.stringify({ redirect_uris: [REDIRECT_URI], token_endpoint_auth_method: 'none' }));
    expect(response.status).toBe(404);
    expect(response.body).not.toHaveProperty('client_id');
    const row = await closed.db
      .selectFrom('clients')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .executeTakeFirstOrThrow();
    expect(Number(row.n)).toBe(0);
  });

  test('the metadata has no registration_endpoint', async () => {
    const response = await request(closed.issuer).get('/.well-known/oauth-authorization-server');
    expect(response.status).toBe(200);
    expect(response.body).not.toHaveProperty('registration_endpoint');
  });
});
