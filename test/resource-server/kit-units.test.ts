/**
 * The kit's parts that Gatehouse itself does not exercise: sender-constrained (DPoP) tokens
 * (RFC 9449 §7), the JWKS refetch rate limit, issuer pinning, the RFC 9728 handler, and the MCP
 * scope policy. Tokens come from a small stand-in authorization server on loopback with its own key.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AuthorizationServer,
  challenge,
  createResourceServer,
  effectiveScopes,
  missingScopes,
  requiredScopesForMcpMessage,
  TokenError,
  verifyAccessToken,
  type TokenErrorCode,
} from 'gatehouse/resource-server';

const RESOURCE = 'https://notes.example.com/mcp';
let issuer: string;
let server: Server;
let signingKey: CryptoKey;
let publicJwk: JWK;
let jwksHits = 0;
let announcedIssuer: string | undefined;

beforeAll(async () => {
  const pair = await generateKeyPair('ES256');
  signingKey = pair.privateKey;
  publicJwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
  server = createServer((req, res) => {
    if (req.url === '/.well-known/oauth-authorization-server') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ issuer: announcedIssuer ?? issuer, jwks_uri: `${issuer}/jwks` }));
    } else if (req.url === '/jwks') {
      jwksHits++;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ keys: [publicJwk] }));
    } else {
      res.statusCode = 404;
      res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => server?.close());

async function accessToken(claims: Record<string, unknown> = {}, kid = 'k1'): Promise<string> {
  return new SignJWT({ client_id: 'client-1', scope: 'notes:read', ...claims })
    .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid })
    .setIssuer(issuer)
    .setSubject('user-1')
    .setAudience(RESOURCE)
    .setIssuedAt()
    .setExpirationTime('5m')
    .sign(signingKey);
}

describe('DPoP-bound tokens (RFC 9449 §7.1)', () => {
  let holder: { privateKey: CryptoKey; jwk: JWK; jkt: string };
  let bound: string;
  beforeAll(async () => {
    const pair = await generateKeyPair('ES256');
    const jwk = await exportJWK(pair.publicKey);
    holder = { privateKey: pair.privateKey, jwk, jkt: await calculateJwkThumbprint(jwk) };
    bound = await accessToken({ cnf: { jkt: holder.jkt } });
  });

  const proof = async (overrides: { htm?: string; htu?: string; ath?: string; iat?: number; key?: CryptoKey; jwk?: JWK; typ?: string } = {}) =>
    new SignJWT({
      jti: randomUUID(),
      htm: overrides.htm ?? 'POST',
      htu: overrides.htu ?? RESOURCE,
      ath: overrides.ath ?? createHash('sha256').update(bound).digest('base64url'),
    })
      .setProtectedHeader({ alg: 'ES256', typ: overrides.typ ?? 'dpop+jwt', jwk: overrides.jwk ?? holder.jwk })
      .setIssuedAt(overrides.iat ?? Math.floor(Date.now() / 1000))
      .sign(overrides.key ?? holder.privateKey);

  const verify = async (scheme: 'Bearer' | 'DPoP', dpopProof: string | undefined, request: { method?: string; url?: string } = {}) =>
    verifyAccessToken(`${scheme} ${bound}`, {
      issuer,
      resource: RESOURCE,
      dpop: { proof: dpopProof, method: request.method ?? 'POST', url: request.url ?? `${RESOURCE}?session=1` },
    });

  const code = async (p: Promise<unknown>): Promise<TokenErrorCode> => {
    try {
      await p;
    } catch (err) {
      return (err as TokenError).code;
    }
    return 'accepted' as TokenErrorCode;
  };

  it('accepts the token with a proof of its key for this request', async () => {
    await expect(verify('DPoP', await proof())).resolves.toMatchObject({ boundKeyThumbprint: holder.jkt, subject: 'user-1' });
  });

  it('a bound token as a Bearer token, or without a proof, is dpop_required', async () => {
    expect(await code(verify('Bearer', await proof()))).toBe('dpop_required');
    expect(await code(verify('DPoP', undefined))).toBe('dpop_required');
  });

  it.each<[string, () => Promise<string>]>([
    ['another key', async () => { const other = await generateKeyPair('ES256'); return proof({ key: other.privateKey, jwk: await exportJWK(other.publicKey) }); }],
    ['another method', () => proof({ htm: 'GET' })],
    ['another URL', () => proof({ htu: 'https://notes.example.com/other' })],
    ['another access token (ath)', () => proof({ ath: 'x'.repeat(43) })],
    ['an old proof', () => proof({ iat: Math.floor(Date.now() / 1000) - 3600 })],
    ['the wrong typ', () => proof({ typ: 'JWT' })],
    ['a signature by another key than the header\'s', async () => { const other = await generateKeyPair('ES256'); return proof({ key: other.privateKey }); }],
    ['garbage', async () => 'not-a-jwt'],
  ])('a proof with %s is dpop_mismatch', async (_what, make) => {
    expect(await code(verify('DPoP', await make()))).toBe('dpop_mismatch');
  });

  it('an unbound token under the DPoP scheme is dpop_mismatch', async () => {
    expect(await code(verifyAccessToken(`DPoP ${await accessToken()}`, { issuer, resource: RESOURCE }))).toBe('dpop_mismatch');
  });

  it('DPoP challenges (RFC 9449 §7.1)', () => {
    const meta = 'https://notes.example.com/.well-known/oauth-protected-resource/mcp';
    expect(challenge(new TokenError('dpop_mismatch', 'the DPoP proof is for another URL'), { resourceMetadataUrl: meta }).headers['WWW-Authenticate']).toBe(
      `DPoP error="invalid_dpop_proof", error_description="the DPoP proof is for another URL", algs="ES256", resource_metadata="${meta}"`,
    );
    const required = challenge(new TokenError('dpop_required', 'send a proof'), { resourceMetadataUrl: meta, scopes: ['notes:read'] });
    expect(required.status).toBe(401);
    expect(required.headers['WWW-Authenticate']).toBe(`DPoP error="invalid_token", error_description="send a proof", algs="ES256", scope="notes:read", resource_metadata="${meta}"`);
  });
});

describe('the authorization server\'s keys and metadata', () => {
  it('unknown key ids fetch the JWKS again at most once per interval: made-up kids cannot flood the authorization server', async () => {
    const as = new AuthorizationServer({ issuer, jwksRefetchMinIntervalSeconds: 60 });
    await verifyAccessToken(`Bearer ${await accessToken()}`, { issuer, resource: RESOURCE, authorizationServer: as });
    const before = jwksHits;
    for (let i = 0; i < 20; i++) {
      const error = await verifyAccessToken(`Bearer ${await accessToken({}, `made-up-${i}`)}`, { issuer, resource: RESOURCE, authorizationServer: as }).catch((e: unknown) => e);
      expect((error as TokenError).code).toBe('bad_signature');
    }
    expect(jwksHits - before).toBe(0);
    expect(as.jwksFetches).toBe(1);
  });

  it('an authorization server whose metadata names another issuer is not trusted (RFC 8414 §3.3)', async () => {
    announcedIssuer = 'https://evil.example.com';
    try {
      const as = new AuthorizationServer({ issuer });
      const error = await verifyAccessToken(`Bearer ${await accessToken()}`, { issuer, resource: RESOURCE, authorizationServer: as }).catch((e: unknown) => e);
      expect((error as TokenError).code).toBe('unavailable');
      expect((error as TokenError).description).toMatch(/names issuer "https:\/\/evil.example.com"/);
    } finally {
      announcedIssuer = undefined;
    }
  });
});

describe('RFC 9728 metadata served by the kit', () => {
  it('answers at the path-suffixed and the bare well-known paths, with CORS; other paths pass on', async () => {
    const rs = createResourceServer({ issuer, resource: RESOURCE, source: 'static', scopes: ['notes:read', 'notes:write'], resourceName: 'Notes' });
    const http = createServer(async (req, res) => {
      if (await rs.serveMetadata(req, res)) return;
      res.statusCode = 418;
      res.end();
    });
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
    try {
      for (const path of ['/.well-known/oauth-protected-resource/mcp', '/.well-known/oauth-protected-resource']) {
        const response = await fetch(`${base}${path}`);
        expect(response.status).toBe(200);
        expect(response.headers.get('access-control-allow-origin')).toBe('*');
        expect(await response.json()).toEqual({
          resource: RESOURCE,
          authorization_servers: [issuer],
          scopes_supported: ['notes:read', 'notes:write'],
          bearer_methods_supported: ['header'],
          resource_name: 'Notes',
        });
      }
      expect((await fetch(`${base}/.well-known/oauth-protected-resource/mcp`, { method: 'POST' })).status).toBe(405);
      expect((await fetch(`${base}/.well-known/oauth-protected-resource/mcp`, { method: 'OPTIONS' })).status).toBe(204);
      expect((await fetch(`${base}/mcp`)).status).toBe(418);
    } finally {
      http.close();
    }
  });
});

describe('scopes an MCP message needs', () => {
  const policy = { base: ['notes:read'], tools: { write_note: ['notes:write'], delete_note: ['notes:write', 'notes:admin'] }, methods: { 'resources/read': ['notes:read'] } };
  it.each<[string, unknown, string[]]>([
    ['initialize', { jsonrpc: '2.0', id: 1, method: 'initialize', params: {} }, ['notes:read']],
    ['a read tool', { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'read_notes' } }, ['notes:read']],
    ['the write tool', { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'write_note' } }, ['notes:read', 'notes:write']],
    ['a batch: every scope of every call, once', [{ method: 'tools/call', params: { name: 'write_note' } }, { method: 'tools/call', params: { name: 'delete_note' } }], ['notes:read', 'notes:write', 'notes:admin']],
    ['not JSON-RPC', 'garbage', ['notes:read']],
  ])('%s', (_what, message, scopes) => {
    expect(requiredScopesForMcpMessage(message, policy)).toEqual(scopes);
  });
});

describe('the package export', () => {
  it('plain Node imports gatehouse/resource-server as JavaScript with its types beside it', async () => {
    const { execFileSync } = await import('node:child_process');
    const { existsSync } = await import('node:fs');
    const root = new URL('../../', import.meta.url);
    const out = execFileSync(
      process.execPath,
      ['--input-type=module', '-e', "const m = await import('gatehouse/resource-server'); console.log(JSON.stringify(Object.keys(m).sort()))"],
      { cwd: root, encoding: 'utf8' },
    );
    expect(JSON.parse(out)).toEqual(expect.arrayContaining(['challenge', 'createResourceServer', 'protectedResourceMetadata', 'verifyAccessToken', 'requireToken', 'koaRequireToken']));
    expect(existsSync(new URL('dist/resource-server/index.d.ts', root))).toBe(true);
  });
});

describe('names that are also Object.prototype members (issue 15 §9)', () => {
  it('a scope, tool or method named constructor, toString or __proto__ is a name like any other', () => {
    for (const name of ['constructor', 'toString', '__proto__', 'hasOwnProperty', 'valueOf']) {
      expect([...effectiveScopes([name], { 'notes:read': ['notes:list'] })]).toEqual([name]);
      expect(missingScopes(['notes:read'], [name])).toEqual([name]);
      expect(missingScopes([name], [name])).toEqual([]);
      expect(requiredScopesForMcpMessage({ method: name }, { base: ['a'] })).toEqual(['a']);
      expect(requiredScopesForMcpMessage({ method: 'tools/call', params: { name } }, { base: ['a'], tools: { search: ['b'] } })).toEqual(['a']);
    }
    expect([...effectiveScopes(['all'], { all: ['constructor'] })].sort()).toEqual(['all', 'constructor']);
  });
});
