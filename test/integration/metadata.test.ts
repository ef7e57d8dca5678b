/**
 * Authorization-server metadata (RFC 8414, OIDC Discovery) and the JWKS, over real HTTP.
 */
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { seed, startTestApp, type TestApp } from '../support/app.ts';

const DISCOVERY_PATHS = ['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration'] as const;

let app: TestApp;
beforeAll(async () => {
  app = await startTestApp();
  await seed(app);
});
afterAll(() => app?.close());

async function metadata(path: string, headers: Record<string, string> = {}) {
  const response = await request(app.issuer).get(path).set(headers);
  expect(response.status).toBe(200);
  expect(response.headers['content-type']).toMatch(/^application\/json/);
  return response;
}

describe.each(DISCOVERY_PATHS)('GET %s', (path) => {
  test('advertises the OAuth 2.1 profile for MCP', async () => {
    const { body } = await metadata(path);
    expect(body.issuer).toBe(app.issuer);
    expect(body.issuer).toBe(app.config.issuer);
    expect(body.issuer.endsWith('/')).toBe(false);
    expect(body.authorization_endpoint).toBe(`${app.issuer}/authorize`);
    expect(body.token_endpoint).toBe(`${app.issuer}/token`);
    expect(body.registration_endpoint).toBe(`${app.issuer}/register`);
    expect(body.jwks_uri).toBe(`${app.issuer}/jwks`);
    expect(body.revocation_endpoint).toBe(`${app.issuer}/revoke`);
    expect(body.code_challenge_methods_supported).toEqual(['S256']);
    expect(body.authorization_response_iss_parameter_supported).toBe(true);
    expect(body.response_types_supported).toEqual(['code']);
    expect([...body.grant_types_supported].sort()).toEqual(['authorization_code', 'refresh_token']);
    for (const grant of ['implicit', 'password', 'client_credentials', 'urn:ietf:params:oauth:grant-type:device_code']) {
      expect(body.grant_types_supported).not.toContain(grant);
    }
    expect(body.token_endpoint_auth_methods_supported).toContain('none');
    expect(body.response_modes_supported ?? ['query']).not.toContain('fragment');
  });

  test('lists the registered resources’ scopes and nothing else', async () => {
    const { body } = await metadata(path);
    expect([...body.scopes_supported].sort()).toEqual(['files:read', 'files:write']);
    expect(body.scopes_supported).not.toContain('openid');
    expect(body.scopes_supported).not.toContain('offline_access');
  });

  test('endpoints are the issuer\'s whatever Host or X-Forwarded-Host the request carries', async () => {
    const viaIp = await request(app.issuer.replace('localhost', '127.0.0.1')).get(path);
    expect(viaIp.body.token_endpoint).toBe(`${app.issuer}/token`);
    const forged = await metadata(path, { Host: 'evil.example', 'X-Forwarded-Host': 'evil.example' });
    expect(JSON.stringify(forged.body)).not.toContain('evil.example');
    expect(forged.body.authorization_endpoint).toBe(`${app.issuer}/authorize`);
  });

  test('a stray MCP-Protocol-Version header does not change the answer', async () => {
    const plain = await metadata(path);
    const withHeader = await metadata(path, { 'MCP-Protocol-Version': '2024-11-05' });
    expect(withHeader.body).toEqual(plain.body);
  });

  test('is readable cross-origin (CORS), including the preflight', async () => {
    const response = await metadata(path, { Origin: 'https://inspector.example' });
    expect(response.headers['access-control-allow-origin']).toBeDefined();
    expect(['*', 'https://inspector.example']).toContain(response.headers['access-control-allow-origin']);

    const preflight = await request(app.issuer)
      .options(path)
      .set('Origin', 'https://inspector.example')
      .set('Access-Control-Request-Method', 'GET')
      .set('Access-Control-Request-Headers', 'mcp-protocol-version');
    expect(preflight.status).toBe(204);
    expect(preflight.headers['access-control-allow-origin']).toBeDefined();
    expect(preflight.headers['access-control-allow-methods']).toMatch(/GET/);
  });
});

test('both discovery documents say the same thing', async () => {
  const [oauth, openid] = await Promise.all(DISCOVERY_PATHS.map((p) => metadata(p)));
  expect(oauth!.body).toEqual(openid!.body);
});

test('scopes_supported follows the resource registry', async () => {
  await app.resources.add({
    uri: 'https://calendar.example.com/mcp',
    name: 'Calendar MCP',
    scopes: [
      { name: 'calendar:read', description: 'Read your calendar' },
      { name: 'files:read', description: 'Read attachments' },
    ],
    accessTokenTtl: 600,
  });
  for (const path of DISCOVERY_PATHS) {
    const { body } = await metadata(path);
    // Each scope once, even when two resources share a name.
    expect([...body.scopes_supported].sort()).toEqual(['calendar:read', 'files:read', 'files:write']);
    expect(body.scopes_supported).not.toContain('openid');
  }
});

test('the JWKS serves ES256 P-256 public keys with a kid and no private parts', async () => {
  const { body: meta } = await metadata('/.well-known/oauth-authorization-server');
  const response = await request(app.issuer).get(new URL(meta.jwks_uri).pathname).set('Origin', 'https://inspector.example');
  expect(response.status).toBe(200);
  expect(response.headers['content-type']).toMatch(/^application\/(jwk-set\+)?json/);
  expect(response.headers['access-control-allow-origin']).toBeDefined();
  const keys = response.body.keys as Record<string, unknown>[];
  expect(keys.length).toBeGreaterThan(0);
  const kids = new Set<unknown>();
  for (const key of keys) {
    expect(key).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256' });
    expect(typeof key.kid).toBe('string');
    expect(key.kid).not.toBe('');
    expect(typeof key.x).toBe('string');
    expect(typeof key.y).toBe('string');
    expect(key).not.toHaveProperty('d');
    for (const privateParam of ['p', 'q', 'dp', 'dq', 'qi', 'k']) expect(key).not.toHaveProperty(privateParam);
    if (key.use !== undefined) expect(key.use).toBe('sig');
    kids.add(key.kid);
  }
  expect(kids.size).toBe(keys.length);
  expect(JSON.stringify(response.body)).not.toMatch(/"d"\s*:/);
});

test('the protected-resource metadata is not Gatehouse’s to serve', async () => {
  for (const path of ['/.well-known/oauth-protected-resource', '/.well-known/oauth-protected-resource/mcp']) {
    const response = await request(app.issuer).get(path);
    expect(response.status).toBe(404);
  }
});

test('with registration disabled the metadata has no registration_endpoint', async () => {
  const closed = await startTestApp({ env: { GATEHOUSE_REGISTRATION: 'disabled' } });
  try {
    for (const path of DISCOVERY_PATHS) {
      const response = await request(closed.issuer).get(path);
      expect(response.status).toBe(200);
      expect(response.body).not.toHaveProperty('registration_endpoint');
      expect(response.body.issuer).toBe(closed.issuer);
    }
  } finally {
    await closed.close();
  }
});
