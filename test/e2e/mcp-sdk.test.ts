/**
 * End to end with the official MCP TypeScript SDK as the client: RFC 9728 discovery from a real MCP
 * server, RFC 8414 discovery at Gatehouse, dynamic client registration, the authorization code flow
 * with PKCE S256 and `resource`, a tool call with the token, refresh-token rotation and replay
 * detection.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { auth, type OAuthClientProvider } from '@modelcontextprotocol/sdk/client/auth.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { seed, startTestApp, TEST_PASSWORD, type TestApp } from '../support/app.ts';
import { registerMcpResource, startMcpServer, WHOAMI_TOOL, type TestMcpServer, type WhoAmI } from '../support/mcp-server.ts';
import { InMemoryOAuthProvider } from '../support/mcp-client.ts';
import { authorizeInBrowser, obtainTokens, REDIRECT_URI, tokenRequest } from '../support/oauth.ts';

const SCOPE = 'mcp:tools';
const EMAIL = 'sdk-user@example.com';

/**
 * A headless OAuthClientProvider: `redirectToAuthorization` plays the user's browser (sign-in and
 * consent) and keeps the authorization code, checking `state` and the RFC 9207 `iss` parameter,
 * which the SDK itself does not check.
 */
class HeadlessProvider extends InMemoryOAuthProvider {
  callbacks: URL[] = [];
  code: string | undefined;

  constructor(private readonly issuer: string) {
    super(REDIRECT_URI, 'Gatehouse e2e (MCP SDK)');
  }

  async redirectToAuthorization(authorizationUrl: URL): Promise<void> {
    this.authorizationUrls.push(authorizationUrl);
    const { callback } = await authorizeInBrowser(authorizationUrl, { email: EMAIL, password: TEST_PASSWORD });
    this.callbacks.push(callback);
    expect(`${callback.origin}${callback.pathname}`).toBe(REDIRECT_URI);
    expect(callback.searchParams.get('iss')).toBe(this.issuer);
    expect(callback.searchParams.get('state')).toBe(this.lastState);
    expect(callback.searchParams.get('error')).toBeNull();
    this.code = callback.searchParams.get('code') ?? undefined;
    expect(this.code).toBeTruthy();
  }
}

async function callWhoami(server: TestMcpServer, authProvider: OAuthClientProvider | undefined) {
  const client = new Client({ name: 'gatehouse-e2e', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(server.url), authProvider ? { authProvider } : {});
  await client.connect(transport);
  try {
    const result = await client.callTool({ name: WHOAMI_TOOL, arguments: {} });
    const content = result.content as Array<{ type: string; text?: string }>;
    expect(content[0]?.type).toBe('text');
    return { result, who: JSON.parse(content[0]!.text!) as WhoAmI };
  } finally {
    await client.close();
  }
}

let app: TestApp;
let mcp: TestMcpServer;
let accountId: string;

beforeAll(async () => {
  app = await startTestApp();
  mcp = await startMcpServer({ issuer: app.issuer, scopes: [SCOPE] });
  await registerMcpResource(app, mcp, SCOPE);
  const account = await app.accounts.create(EMAIL, TEST_PASSWORD);
  accountId = account.id;
});

afterAll(async () => {
  await mcp?.close();
  await app?.close();
});

test('the MCP server refuses a call without a token, pointing at its protected-resource metadata', async () => {
  const response = await fetch(mcp.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'tools/call',
      params: { name: WHOAMI_TOOL, arguments: {} },
    }),
  });
  expect(response.status).toBe(401);
  const challenge = response.headers.get('www-authenticate') ?? '';
  expect(challenge).toMatch(/^Bearer /);
  expect(challenge).toContain(`resource_metadata="${mcp.resourceMetadataUrl}"`);

  const prm = await (await fetch(mcp.resourceMetadataUrl)).json();
  expect(prm).toMatchObject({ resource: mcp.url, authorization_servers: [app.issuer], scopes_supported: [SCOPE] });

  // And the SDK client, without an auth provider, cannot get in either.
  await expect(callWhoami(mcp, undefined)).rejects.toMatchObject({ code: 401 });
  expect(mcp.accepted).toHaveLength(0);
});

test('the MCP server refuses a token that is not a Gatehouse access token', async () => {
  const response = await fetch(mcp.url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      authorization: 'Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJtYWxsb3J5In0.',
    },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
  });
  expect(response.status).toBe(401);
  expect(response.headers.get('www-authenticate')).toMatch(/error="invalid_token"/);
});

test('the MCP server refuses a Gatehouse token issued for another MCP server (audience)', async () => {
  const other = 'https://other-mcp.example.com';
  await seed(app, { uri: other }); // and its user, alice@example.com
  const { tokens } = await obtainTokens(app.issuer, { resource: other });
  expect(tokens.status).toBe(200);
  expect(decodeJwt(tokens.body.access_token).aud).toBe(other);

  const response = await fetch(mcp.url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      authorization: `Bearer ${tokens.body.access_token}`,
    },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: WHOAMI_TOOL, arguments: {} } }),
  });
  expect(response.status).toBe(401);
  expect(response.headers.get('www-authenticate')).toMatch(/error="invalid_token"/);
  expect(mcp.accepted).toHaveLength(0);
});

test('registration accepts the scope an MCP SDK client sends (its PRM scopes_supported)', async () => {
  // The SDK always puts the protected-resource metadata's scopes_supported in the DCR body.
  const response = await fetch(`${app.issuer}/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      client_name: 'scope in DCR',
      redirect_uris: [REDIRECT_URI],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      scope: SCOPE,
    }),
  });
  const body = (await response.json()) as Record<string, unknown>;
  expect(body.error_description ?? body.error).toBeUndefined();
  expect(response.status).toBe(201);
  expect(body.client_id).toBeTruthy();
});

describe('the MCP SDK client, end to end', () => {
  let provider: HeadlessProvider;

  test('auth() discovers, registers, and sends the user through Gatehouse (REDIRECT)', async () => {
    provider = new HeadlessProvider(app.issuer);
    const requested: string[] = [];
    const fetchFn = async (input: string | URL, init?: RequestInit) => {
      requested.push(String(input));
      return fetch(input, init);
    };

    expect(await auth(provider, { serverUrl: mcp.url, fetchFn })).toBe('REDIRECT');

    // Discovery went MCP server (RFC 9728) → Gatehouse (RFC 8414) → registration (RFC 7591).
    expect(requested[0]).toBe(mcp.resourceMetadataUrl);
    expect(requested).toContain(`${app.issuer}/.well-known/oauth-authorization-server`);
    expect(requested).toContain(`${app.issuer}/register`);

    expect(provider.client?.client_id).toBeTruthy();
    expect((provider.client as { token_endpoint_auth_method?: string }).token_endpoint_auth_method).toBe('none');

    const url = provider.authorizationUrls[0]!;
    expect(`${url.origin}${url.pathname}`).toBe(`${app.issuer}/authorize`);
    expect(url.searchParams.get('response_type')).toBe('code');
    expect(url.searchParams.get('code_challenge_method')).toBe('S256');
    expect(url.searchParams.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(url.searchParams.get('resource')).toBe(mcp.url);
    expect(url.searchParams.get('scope')).toBe(SCOPE);
    expect(provider.code).toBeTruthy();
  });

  test('auth() with the code exchanges it for an access token bound to the MCP server (AUTHORIZED)', async () => {
    expect(provider.code, 'needs the authorization code from the previous test').toBeTruthy();
    expect(await auth(provider, { serverUrl: mcp.url, authorizationCode: provider.code! })).toBe('AUTHORIZED');
    const tokens = provider.storedTokens!;
    expect(tokens.token_type.toLowerCase()).toBe('bearer');
    expect(tokens.refresh_token).toBeTruthy();

    expect(decodeProtectedHeader(tokens.access_token)).toMatchObject({ typ: 'at+jwt', alg: 'ES256' });
    const claims = decodeJwt(tokens.access_token);
    expect(claims.aud).toBe(mcp.url);
    expect(claims.iss).toBe(app.issuer);
    expect(claims.sub).toBe(accountId);
    expect(claims.client_id).toBe(provider.client!.client_id);
    expect(claims.scope).toBe(SCOPE);
  });

  test('a real SDK Client calls the tool as the user', async () => {
    expect(provider.storedTokens, 'needs the tokens from the previous test').toBeDefined();
    const { result, who } = await callWhoami(mcp, provider);
    expect(result.isError).toBeFalsy();
    expect(who).toEqual({ sub: accountId, client_id: provider.client!.client_id, scopes: [SCOPE], aud: mcp.url });
    expect(mcp.accepted.at(-1)?.sub).toBe(accountId);
  });

  test('refresh rotates the refresh token; replaying the old one cuts the user off', async () => {
    expect(provider.storedTokens?.refresh_token, 'needs the tokens from the previous tests').toBeTruthy();
    const first = provider.storedTokens!;
    const oldRefresh = first.refresh_token!;

    // Force a refresh: no access token, only the refresh token.
    provider.storedTokens = { ...first, access_token: '' };
    const redirectsBefore = provider.authorizationUrls.length;
    expect(await auth(provider, { serverUrl: mcp.url })).toBe('AUTHORIZED');
    expect(provider.authorizationUrls).toHaveLength(redirectsBefore); // a refresh, not a new authorization

    const second = provider.storedTokens!;
    expect(second.access_token).toBeTruthy();
    expect(second.access_token).not.toBe(first.access_token);
    expect(second.refresh_token).toBeTruthy();
    expect(second.refresh_token).not.toBe(oldRefresh);
    expect(decodeJwt(second.access_token)).toMatchObject({ aud: mcp.url, sub: accountId, scope: SCOPE });

    // The refreshed access token works at the MCP server.
    const { who } = await callWhoami(mcp, provider);
    expect(who.sub).toBe(accountId);

    // The client uses its new refresh token (so it did get the answer: no rotation grace applies) …
    const clientId = provider.client!.client_id;
    const third = await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: second.refresh_token!, client_id: clientId, resource: mcp.url });
    expect(third.status).toBe(200);

    // … then a replay of the rotated-out refresh token: refused …
    const replay = await tokenRequest(app.issuer, {
      grant_type: 'refresh_token',
      refresh_token: oldRefresh,
      client_id: clientId,
      resource: mcp.url,
    });
    expect(replay.status).toBe(400);
    expect(replay.body.error).toBe('invalid_grant');

    // … and the whole token family is revoked: the newest refresh token no longer works either.
    const newest = await tokenRequest(app.issuer, {
      grant_type: 'refresh_token',
      refresh_token: third.body.refresh_token,
      client_id: clientId,
      resource: mcp.url,
    });
    expect(newest.status).toBe(400);
    expect(newest.body.error).toBe('invalid_grant');
  });
});
