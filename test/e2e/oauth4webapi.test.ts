/**
 * End to end with oauth4webapi, a strict, spec-following OAuth client: RFC 9728 and RFC 8414
 * discovery with exact identifier checks, RFC 7591 registration, PKCE S256, RFC 9207 `iss`
 * validation of authorization (error) responses, RFC 8707 `resource` at /authorize and /token, and
 * refresh-token rotation.
 */
import { createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose';
import * as oauth from 'oauth4webapi';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestApp, TEST_PASSWORD, type TestApp } from '../support/app.ts';
import { registerMcpResource, startMcpServer, WHOAMI_TOOL, type TestMcpServer } from '../support/mcp-server.ts';
import { authorizeInBrowser, REDIRECT_URI } from '../support/oauth.ts';

const SCOPE = 'mcp:tools';
const EMAIL = 'strict-client@example.com';

// Gatehouse's test issuer is http://localhost:PORT; oauth4webapi refuses plain http unless told.
const insecure = { [oauth.allowInsecureRequests]: true } as const;

let app: TestApp;
let mcp: TestMcpServer;
let accountId: string;
let as: oauth.AuthorizationServer;
let resource: string;

async function register(): Promise<oauth.Client> {
  const response = await oauth.dynamicClientRegistrationRequest(
    as,
    {
      client_name: 'Gatehouse e2e (oauth4webapi)',
      application_type: 'native',
      redirect_uris: [REDIRECT_URI],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    },
    insecure,
  );
  return oauth.processDynamicClientRegistrationResponse(response);
}

async function authorizationRequest(client: oauth.Client) {
  const verifier = oauth.generateRandomCodeVerifier();
  const challenge = await oauth.calculatePKCECodeChallenge(verifier);
  const state = oauth.generateRandomState();
  const url = new URL(as.authorization_endpoint!);
  url.searchParams.set('client_id', client.client_id);
  url.searchParams.set('redirect_uri', REDIRECT_URI);
  url.searchParams.set('response_type', 'code');
  url.searchParams.set('code_challenge', challenge);
  url.searchParams.set('code_challenge_method', 'S256');
  url.searchParams.set('state', state);
  url.searchParams.set('scope', SCOPE);
  url.searchParams.set('resource', resource);
  return { url, verifier, state };
}

beforeAll(async () => {
  app = await startTestApp();
  mcp = await startMcpServer({ issuer: app.issuer, scopes: [SCOPE] });
  await registerMcpResource(app, mcp, SCOPE);
  accountId = (await app.accounts.create(EMAIL, TEST_PASSWORD)).id;
});

afterAll(async () => {
  await mcp?.close();
  await app?.close();
});

test('discovery: the MCP server names Gatehouse, and Gatehouse’s metadata names itself exactly', async () => {
  // RFC 9728: oauth4webapi requires `resource` to equal the identifier it asked about.
  const resourceIdentifier = new URL(mcp.url);
  const rs = await oauth.processResourceDiscoveryResponse(
    resourceIdentifier,
    await oauth.resourceDiscoveryRequest(resourceIdentifier, insecure),
  );
  expect(rs.resource).toBe(mcp.url);
  expect(rs.authorization_servers).toEqual([app.issuer]);
  expect(rs.scopes_supported).toEqual([SCOPE]);
  resource = rs.resource;

  // RFC 8414: the `issuer` must be identical to the identifier the well-known URL was built from.
  const issuer = new URL(rs.authorization_servers![0]!);
  as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...insecure }));
  expect(as.issuer).toBe(app.issuer);
  expect(as.code_challenge_methods_supported).toContain('S256');
  expect(as.authorization_response_iss_parameter_supported).toBe(true);
  expect(as.registration_endpoint).toBe(`${app.issuer}/register`);

  // The same document also answers the OIDC well-known URL.
  const viaOidc = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, { algorithm: 'oidc', ...insecure }));
  expect(viaOidc.issuer).toBe(app.issuer);

  // … and a client that expected another spelling of the issuer refuses it.
  const otherSpelling = new URL(app.issuer.replace('localhost', '127.0.0.1'));
  await expect(
    oauth.processDiscoveryResponse(otherSpelling, await oauth.discoveryRequest(otherSpelling, { algorithm: 'oauth2', ...insecure })),
  ).rejects.toThrow(/issuer/);
});

describe('authorization code flow with a strict client', () => {
  let client: oauth.Client;
  let tokens: oauth.TokenEndpointResponse;

  test('registers, authorizes with PKCE and resource, validates iss, and gets a token for the MCP server', async () => {
    client = await register();
    expect(client.client_id).toBeTruthy();
    expect(client.token_endpoint_auth_method).toBe('none');
    expect(client.client_secret).toBeUndefined();

    const { url, verifier, state } = await authorizationRequest(client);
    const { callback } = await authorizeInBrowser(url, { email: EMAIL, password: TEST_PASSWORD });
    expect(`${callback.origin}${callback.pathname}`).toBe(REDIRECT_URI);
    expect(callback.searchParams.get('iss')).toBe(app.issuer);

    // Checks `iss` (RFC 9207, required because the metadata advertises it) and `state`.
    const params = oauth.validateAuthResponse(as, client, callback, state);
    expect(params.get('code')).toBeTruthy();

    const response = await oauth.authorizationCodeGrantRequest(as, client, oauth.None(), params, REDIRECT_URI, verifier, {
      additionalParameters: { resource },
      ...insecure,
    });
    tokens = await oauth.processAuthorizationCodeResponse(as, client, response);
    expect(tokens.token_type).toBe('bearer');
    expect(tokens.access_token).toBeTruthy();
    expect(tokens.refresh_token).toBeTruthy();
    expect(tokens.scope).toBe(SCOPE);
    expect(tokens.id_token).toBeUndefined();

    // RFC 9068 access token, audience-bound to the MCP server (RFC 8707).
    const { payload, protectedHeader } = await jwtVerify(tokens.access_token, createRemoteJWKSet(new URL(as.jwks_uri!)), {
      issuer: as.issuer,
      audience: resource,
      typ: 'at+jwt',
      algorithms: ['ES256'],
    });
    expect(protectedHeader.typ).toBe('at+jwt');
    expect(payload.aud).toBe(resource);
    expect(payload.sub).toBe(accountId);
    expect(payload.client_id).toBe(client.client_id);
    expect(payload.scope).toBe(SCOPE);
  });

  test('the token opens the MCP server', async () => {
    const headers = new Headers({ 'content-type': 'application/json', accept: 'application/json, text/event-stream' });
    const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: WHOAMI_TOOL, arguments: {} } });
    const response = await oauth.protectedResourceRequest(tokens.access_token, 'POST', new URL(mcp.url), headers, body, insecure);
    expect(response.status).toBe(200);
    const text = await response.text();
    expect(text).toContain(accountId);
    expect(mcp.accepted.at(-1)).toMatchObject({ sub: accountId, aud: resource });

    const without = await fetch(mcp.url, { method: 'POST', headers, body });
    expect(without.status).toBe(401);
    expect(without.headers.get('www-authenticate')).toContain(`resource_metadata="${mcp.resourceMetadataUrl}"`);
  });

  test('refresh rotates the refresh token and keeps the audience', async () => {
    const oldRefresh = tokens.refresh_token!;
    const response = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), oldRefresh, {
      additionalParameters: { resource },
      ...insecure,
    });
    const refreshed = await oauth.processRefreshTokenResponse(as, client, response);
    expect(refreshed.access_token).toBeTruthy();
    expect(refreshed.access_token).not.toBe(tokens.access_token);
    expect(refreshed.refresh_token).toBeTruthy();
    expect(refreshed.refresh_token).not.toBe(oldRefresh);
    expect(decodeJwt(refreshed.access_token)).toMatchObject({ aud: resource, sub: accountId, iss: app.issuer, scope: SCOPE });

    // A client that lost that answer presents the rotated-out token once more, within the rotation
    // grace: it gets a well-formed answer with a new refresh token (docs/security.md I-32) …
    const retry = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), oldRefresh, {
      additionalParameters: { resource },
      ...insecure,
    });
    const retried = await oauth.processRefreshTokenResponse(as, client, retry);
    expect(retried.refresh_token).toBeTruthy();
    expect(retried.refresh_token).not.toBe(refreshed.refresh_token);
    expect(decodeJwt(retried.access_token)).toMatchObject({ aud: resource, sub: accountId, iss: app.issuer, scope: SCOPE });

    // … and then the rotated-out token is spent: presenting it again is reuse.
    const replay = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), oldRefresh, {
      additionalParameters: { resource },
      ...insecure,
    });
    const error = await oauth.processRefreshTokenResponse(as, client, replay).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(oauth.ResponseBodyError);
    expect((error as oauth.ResponseBodyError).error).toBe('invalid_grant');
  });
});

test('a denied consent comes back as an access_denied error response that carries iss', async () => {
  // A fresh client, so no earlier consent is remembered and the consent page is shown.
  const client = await register();
  const { url, state } = await authorizationRequest(client);
  const { callback, pages } = await authorizeInBrowser(url, { email: EMAIL, password: TEST_PASSWORD, decision: 'deny' });
  expect(pages.some((html) => html.includes('/consent'))).toBe(true);

  expect(`${callback.origin}${callback.pathname}`).toBe(REDIRECT_URI);
  expect(callback.searchParams.get('error')).toBe('access_denied');
  expect(callback.searchParams.get('code')).toBeNull();
  expect(callback.searchParams.get('state')).toBe(state);
  expect(callback.searchParams.get('iss')).toBe(app.issuer);

  // oauth4webapi checks iss and state first: a missing or wrong iss would be an
  // OperationProcessingError, not the authorization server's own error.
  let error: unknown;
  try {
    oauth.validateAuthResponse(as, client, callback, state);
  } catch (err) {
    error = err;
  }
  expect(error).toBeInstanceOf(oauth.AuthorizationResponseError);
  expect((error as oauth.AuthorizationResponseError).error).toBe('access_denied');
});
