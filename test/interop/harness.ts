/**
 * Replays a real MCP client's OAuth habits against Gatehouse: its registration body (DCR) or its
 * Client ID Metadata Document (served by a local https server at the same path the vendor uses),
 * its redirect URI style, how it spells `resource`, which scopes and `state` it sends, how it
 * authenticates at /token, and what it sends on refresh.
 *
 * Every profile runs the same journey: discovery → registration or document → /authorize (sign-in
 * and consent in the test "browser") → code exchange → two refreshes with rotation → replay of a
 * rotated refresh token is refused. Each client's file says where its facts come from.
 */
import { createHash, randomBytes, randomUUID, type webcrypto } from 'node:crypto';
import { decodeJwt, exportJWK, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestApp, TEST_PASSWORD, type TestApp } from '../support/app.ts';
import { startDocumentServer, TEST_DOCUMENT_TRUST, type DocumentServer } from '../support/document-server.ts';
import { authorizeInBrowser, CookieJar } from '../support/oauth.ts';

export type TokenAuth = 'none' | 'client_secret_post' | 'client_secret_basic' | 'private_key_jwt';

export interface InteropProfile {
  /** The client, as named in test titles. */
  client: string;
  registration:
    | {
        kind: 'dcr';
        /** The JSON body the client POSTs to /register. */
        body: Record<string, unknown>;
      }
    | {
        kind: 'cimd';
        /** Path of the document on the vendor's site, served here from https://localhost:PORT. */
        path: string;
        /** The document, given the client_id it must carry. `jwksUri` is set when the client uses private_key_jwt. */
        document: (clientId: string, jwksUri: string) => Record<string, unknown>;
      };
  /** The redirect_uri the client sends at /authorize and /token (e.g. with its ephemeral port). */
  redirectUri: string;
  /** The MCP server as registered at Gatehouse: its canonical URI and scopes. */
  resource: { uri: string; scopes: string[]; defaultScopes: string[] };
  /** How the client spells `resource` on each request; undefined = not sent; an array = sent repeatedly. */
  sends: {
    authorizeResource: string | string[] | undefined;
    tokenResource: string | string[] | undefined;
    refreshResource: string | string[] | undefined;
    /** The `scope` parameter at /authorize; undefined = not sent. */
    scope: string | undefined;
    /** The `scope` parameter on refresh; undefined = not sent. */
    refreshScope?: string | undefined;
    /** The `state` parameter; undefined = not sent. */
    state: string | undefined;
    /** Other authorization request parameters the client adds (prompt, ui_locales, …). */
    extraAuthorizeParams?: Record<string, string>;
    /** Headers on discovery requests (e.g. an old MCP-Protocol-Version). */
    discoveryHeaders?: Record<string, string>;
  };
  /** How the client authenticates at /token. */
  tokenAuth: TokenAuth;
  /** The scopes the access token must carry. */
  expectedScopes: string[];
}

interface ClientState {
  clientId: string;
  clientSecret?: string;
  privateKey?: webcrypto.CryptoKey;
  code?: string;
  verifier?: string;
  refreshTokens: string[];
}

/** Form-encodes params, repeating a key for array values. */
function form(params: Record<string, string | string[] | undefined>): URLSearchParams {
  const body = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) for (const value of v === undefined ? [] : [v].flat()) body.append(k, value);
  return body;
}

export function describeClient(profile: InteropProfile): void {
  describe(`${profile.client}`, () => {
    let app: TestApp;
    let documents: DocumentServer;
    const state: ClientState = { clientId: '', refreshTokens: [] };

    beforeAll(async () => {
      documents = await startDocumentServer();
      app = await startTestApp({ testOnly: { documentFetchTrust: TEST_DOCUMENT_TRUST } });
      await app.resources.add({
        uri: profile.resource.uri,
        name: 'MCP server',
        scopes: profile.resource.scopes.map((name) => ({ name, description: `Scope ${name}` })),
        defaultScopes: profile.resource.defaultScopes,
        accessTokenTtl: 600,
      });
      await app.accounts.create('alice@example.com', TEST_PASSWORD);
    });
    afterAll(async () => {
      await app?.close();
      await documents?.close();
    });

    /** Signs a private_key_jwt client assertion (RFC 7523 §2.2) for /token. */
    async function clientAssertion(): Promise<string> {
      return new SignJWT({})
        .setProtectedHeader({ alg: 'RS256', kid: 'interop' })
        .setIssuer(state.clientId)
        .setSubject(state.clientId)
        .setAudience(`${app.issuer}/token`)
        .setJti(randomUUID())
        .setIssuedAt()
        .setExpirationTime('2m')
        .sign(state.privateKey!);
    }

    async function token(params: Record<string, string | string[] | undefined>) {
      const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
      const body: Record<string, string | string[] | undefined> = { ...params };
      switch (profile.tokenAuth) {
        case 'none':
          body.client_id = state.clientId;
          break;
        case 'client_secret_post':
          body.client_id = state.clientId;
          body.client_secret = state.clientSecret;
          break;
        case 'client_secret_basic':
          headers.authorization = `Basic ${Buffer.from(`${encodeURIComponent(state.clientId)}:${encodeURIComponent(state.clientSecret!)}`).toString('base64')}`;
          break;
        case 'private_key_jwt':
          body.client_id = state.clientId;
          body.client_assertion_type = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
          body.client_assertion = await clientAssertion();
          break;
      }
      const response = await fetch(`${app.issuer}/token`, { method: 'POST', headers, body: form(body) });
      return { status: response.status, body: (await response.json()) as Record<string, any> };
    }

    function expectAccessToken(accessToken: string) {
      const claims = decodeJwt(accessToken);
      expect(claims.aud).toBe(profile.resource.uri);
      expect(claims.iss).toBe(app.issuer);
      expect(String(claims.scope ?? '').split(' ').filter(Boolean).sort()).toEqual([...profile.expectedScopes].sort());
    }

    test('discovery gives it what it needs', async () => {
      const response = await fetch(`${app.issuer}/.well-known/oauth-authorization-server`, { headers: profile.sends.discoveryHeaders });
      expect(response.status).toBe(200);
      const metadata = (await response.json()) as Record<string, any>;
      expect(metadata.issuer).toBe(app.issuer);
      expect(metadata.code_challenge_methods_supported).toEqual(['S256']);
      expect(metadata.authorization_response_iss_parameter_supported).toBe(true);
      expect(metadata.grant_types_supported).toEqual(['authorization_code', 'refresh_token']);
      expect(metadata.token_endpoint_auth_methods_supported).toContain(profile.tokenAuth);
      expect(metadata.token_endpoint_auth_methods_supported).toContain('none');
      if (profile.registration.kind === 'cimd') expect(metadata.client_id_metadata_document_supported).toBe(true);
      else expect(metadata.registration_endpoint).toBe(`${app.issuer}/register`);
    });

    test(profile.registration.kind === 'dcr' ? 'registers with its own registration body' : 'is known by its metadata document', async () => {
      const registration = profile.registration;
      if (registration.kind === 'dcr') {
        const response = await fetch(`${app.issuer}/register`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(registration.body),
        });
        const body = (await response.json()) as Record<string, any>;
        expect(response.status, JSON.stringify(body)).toBe(201);
        // RFC 7591 §3.2.1: the response echoes the registered metadata; rmcp requires redirect_uris.
        expect(body.redirect_uris).toEqual(registration.body.redirect_uris);
        expect(body.token_endpoint_auth_method).toBe(registration.body.token_endpoint_auth_method ?? 'none');
        expect(body.grant_types).toEqual(['authorization_code', 'refresh_token']);
        if (profile.tokenAuth === 'none') expect(body).not.toHaveProperty('client_secret');
        else expect(typeof body.client_secret).toBe('string');
        state.clientId = body.client_id;
        state.clientSecret = body.client_secret;
      } else {
        state.clientId = documents.url(registration.path);
        const jwksPath = `${registration.path}.jwks.json`;
        if (profile.tokenAuth === 'private_key_jwt') {
          const { publicKey, privateKey } = await generateKeyPair('RS256', { extractable: true });
          state.privateKey = privateKey;
          documents.serve(jwksPath, { body: { keys: [{ ...(await exportJWK(publicKey)), kid: 'interop', alg: 'RS256', use: 'sig' }] } });
        }
        documents.serve(registration.path, { body: registration.document(state.clientId, documents.url(jwksPath)) });
      }
    });

    test('authorizes: the callback carries iss, its state byte for byte, and a plain code', async () => {
      state.verifier = randomBytes(32).toString('base64url');
      const challenge = createHash('sha256').update(state.verifier).digest('base64url');
      const url = new URL(`${app.issuer}/authorize`);
      url.search = form({
        response_type: 'code',
        client_id: state.clientId,
        redirect_uri: profile.redirectUri,
        code_challenge: challenge,
        code_challenge_method: 'S256',
        scope: profile.sends.scope,
        resource: profile.sends.authorizeResource,
        state: profile.sends.state,
        ...profile.sends.extraAuthorizeParams,
      }).toString();
      const { callback, pages } = await authorizeInBrowser(url, { jar: new CookieJar() });
      const expected = new URL(profile.redirectUri);
      expect(`${callback.protocol}//${callback.host}${callback.pathname}`).toBe(`${expected.protocol}//${expected.host}${expected.pathname}`);
      expect(callback.searchParams.get('error'), callback.toString()).toBeNull();
      expect(callback.searchParams.get('iss')).toBe(app.issuer);
      expect(callback.searchParams.get('state')).toBe(profile.sends.state ?? null);
      const code = callback.searchParams.get('code');
      expect(code).toMatch(/^[A-Za-z0-9\-._~]+$/);
      state.code = code!;
      // The consent page names the client and the MCP server it asked for.
      expect(pages.some((page) => page.includes(profile.resource.uri))).toBe(true);
    });

    test('exchanges the code: an access token for the registered resource, and a refresh token', async () => {
      const response = await token({
        grant_type: 'authorization_code',
        code: state.code,
        code_verifier: state.verifier,
        redirect_uri: profile.redirectUri,
        resource: profile.sends.tokenResource,
      });
      expect(response.status, JSON.stringify(response.body)).toBe(200);
      expect(response.body.token_type).toBe('Bearer');
      expectAccessToken(response.body.access_token);
      expect(typeof response.body.refresh_token).toBe('string');
      state.refreshTokens.push(response.body.refresh_token);
    });

    test('refreshes twice with rotation, the way it sends refreshes', async () => {
      for (let i = 0; i < 2; i++) {
        const response = await token({
          grant_type: 'refresh_token',
          refresh_token: state.refreshTokens.at(-1),
          resource: profile.sends.refreshResource,
          scope: profile.sends.refreshScope,
        });
        expect(response.status, JSON.stringify(response.body)).toBe(200);
        expectAccessToken(response.body.access_token);
        expect(response.body.refresh_token).not.toBe(state.refreshTokens.at(-1));
        state.refreshTokens.push(response.body.refresh_token);
      }
    });

    test('a rotated refresh token is refused afterwards', async () => {
      const replay = await token({ grant_type: 'refresh_token', refresh_token: state.refreshTokens[0] });
      expect(replay.status).toBe(400);
      expect(replay.body.error).toBe('invalid_grant');
    });
  });
}
