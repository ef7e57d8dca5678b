/**
 * RFC 8707 resource indicators as MCP clients send them: canonicalisation, duplicates, the single
 * registered resource as the default, and `aud` always the registered canonical URI.
 */
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { canonicalizeResourceUri } from '../../src/resources/canonical-uri.ts';
import { resolveRequestedScopes } from '../../src/oidc/resource-indicators.ts';
import { seed, startTestApp, type TestApp } from '../support/app.ts';
import { REDIRECT_URI, authorizationUrl, authorizeForCode, exchangeCode, pkcePair, registerClient } from '../support/oauth.ts';

describe('canonicalizeResourceUri', () => {
  test.each([
    ['https://mcp.example.com', 'https://mcp.example.com'],
    ['https://mcp.example.com/', 'https://mcp.example.com'],
    ['HTTPS://MCP.Example.COM/', 'https://mcp.example.com'],
    ['https://mcp.example.com:443/mcp', 'https://mcp.example.com/mcp'],
    ['https://mcp.example.com/MCP', 'https://mcp.example.com/MCP'],
    ['https://mcp.example.com/mcp/', 'https://mcp.example.com/mcp/'],
    ['http://localhost:3000/mcp', 'http://localhost:3000/mcp'],
  ])('%s → %s', (input, expected) => {
    expect(canonicalizeResourceUri(input)).toEqual({ ok: true, uri: expected });
  });

  test.each(['mcp.example.com', 'https://mcp.example.com/#x', 'urn:example:mcp', 'https://user:pw@mcp.example.com', ' https://mcp.example.com', ''])(
    '%j is refused',
    (input) => {
      expect(canonicalizeResourceUri(input).ok).toBe(false);
    },
  );
});

describe('resolveRequestedScopes', () => {
  const resource = {
    id: '1',
    uri: 'https://x',
    name: 'x',
    scopes: [
      { name: 'a', description: 'A' },
      { name: 'b', description: 'B' },
    ],
    defaultScopes: ['a'],
    accessTokenTtl: 60,
    createdAt: new Date(),
  };
  test('keeps what the resource offers, in order, once', () => expect(resolveRequestedScopes('b x b openid a', resource)).toEqual(['b', 'a']));
  test('falls back to the defaults', () => {
    expect(resolveRequestedScopes(undefined, resource)).toEqual(['a']);
    expect(resolveRequestedScopes('openid offline_access', resource)).toEqual(['a']);
  });
});

describe('over HTTP', () => {
  let app: TestApp;
  let client: Record<string, any>;
  beforeAll(async () => {
    app = await startTestApp();
    await seed(app, { uri: 'https://mcp.example.com' });
    client = await registerClient(app.issuer);
  });
  afterAll(() => app?.close());

  async function flow(authorizeResource: string | undefined, tokenResource: string | string[] | undefined) {
    const { code, verifier } = await authorizeForCode(app.issuer, client, { resource: authorizeResource });
    return exchangeCode(app.issuer, client, code, verifier, tokenResource);
  }

  test('different spellings at /authorize and /token are the same resource; aud is canonical', async () => {
    const r = await flow('HTTPS://MCP.EXAMPLE.COM/', 'https://mcp.example.com');
    expect(r.status).toBe(200);
    expect(decodeJwt(r.body.access_token).aud).toBe('https://mcp.example.com');
    const r2 = await flow('https://mcp.example.com', 'https://Mcp.Example.com/');
    expect(r2.status).toBe(200);
    expect(decodeJwt(r2.body.access_token).aud).toBe('https://mcp.example.com');
  });

  test('the same resource sent twice counts once', async () => {
    const r = await flow('https://mcp.example.com', ['https://mcp.example.com', 'https://mcp.example.com/']);
    expect(r.status).toBe(200);
    expect(decodeJwt(r.body.access_token).aud).toBe('https://mcp.example.com');
  });

  test('without resource, the only registered MCP server is bound', async () => {
    const r = await flow(undefined, undefined);
    expect(r.status).toBe(200);
    expect(decodeJwt(r.body.access_token).aud).toBe('https://mcp.example.com');
  });

  test('two different resources in one authorization request are refused', async () => {
    await app.resources.add({ uri: 'https://two.example.com', name: 'Two', scopes: [{ name: 't', description: 'T' }], accessTokenTtl: 60 });
    const { challenge } = pkcePair();
    const url = authorizationUrl(app.issuer, {
      client_id: client.client_id,
      response_type: 'code',
      redirect_uri: REDIRECT_URI,
      code_challenge: challenge,
      code_challenge_method: 'S256',
      resource: 'https://mcp.example.com',
    });
    url.searchParams.append('resource', 'https://two.example.com');
    const response = await fetch(url, { redirect: 'manual' });
    const location = new URL(response.headers.get('location')!);
    expect(location.searchParams.get('error')).toBe('invalid_target');
    expect(location.searchParams.get('iss')).toBe(app.issuer);
    await app.resources.remove('https://two.example.com');
  });
});
