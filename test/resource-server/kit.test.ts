/**
 * The resource-server kit (`gatehouse/resource-server`, issue 5) against tokens from a running
 * Gatehouse: every refusal code, the exact WWW-Authenticate strings, no token passthrough, key
 * rotation without a failed request, and the adapters. Imported through the package export, as an
 * MCP server would.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import { sql } from 'kysely';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  challenge,
  createResourceServer,
  koaRequireToken,
  protectedResourceMetadataUrl,
  requireToken,
  TokenError,
  verifyAccessToken,
  type TokenErrorCode,
  type VerifiedToken,
} from 'gatehouse/resource-server';
import { createKeysService } from '../../src/keys/keys.service.ts';
import { rotateSigningKey } from '../../src/keys/rotation.ts';
import { createSecretBox } from '../../src/keys/secret-box.ts';
import { seed, startTestApp, type TestApp } from '../support/app.ts';
import { obtainTokens } from '../support/oauth.ts';

const RESOURCE = 'https://mcp.example.com';
const OTHER = 'https://other-mcp.example.com/mcp';
const METADATA_URL = 'https://mcp.example.com/.well-known/oauth-protected-resource';

let app: TestApp;
let readToken: string;
let writeToken: string;
let otherToken: string;
let accountId: string;

beforeAll(async () => {
  app = await startTestApp();
  const { account } = await seed(app);
  accountId = account.id;
  await app.resources.add({
    uri: OTHER,
    name: 'Another MCP server',
    scopes: [{ name: 'files:read', description: 'Read files there' }],
    accessTokenTtl: 600,
  });
  readToken = (await obtainTokens(app.issuer, { scope: 'files:read' })).tokens.body.access_token;
  writeToken = (await obtainTokens(app.issuer, { scope: 'files:read files:write' })).tokens.body.access_token;
  otherToken = (await obtainTokens(app.issuer, { resource: OTHER, scope: 'files:read' })).tokens.body.access_token;
});
afterAll(() => app?.close());
afterEach(() => vi.useRealTimers());

/** The TokenError a verification rejects with. */
async function refusal(header: string | undefined, options: Partial<Parameters<typeof verifyAccessToken>[1]> = {}): Promise<TokenError> {
  try {
    await verifyAccessToken(header, { issuer: app.issuer, resource: RESOURCE, ...options });
  } catch (err) {
    expect(err).toBeInstanceOf(TokenError);
    return err as TokenError;
  }
  throw new Error('the token was accepted');
}

const bearer = (token: string) => `Bearer ${token}`;
const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

describe('verifyAccessToken against a running Gatehouse', () => {
  it('accepts a token for this resource: subject, client, scopes and expiry', async () => {
    const verified: VerifiedToken = await verifyAccessToken(bearer(writeToken), { issuer: app.issuer, resource: RESOURCE, requiredScopes: ['files:write'] });
    expect(verified.subject).toBe(accountId);
    expect(verified.clientId).toMatch(/\S/);
    expect(verified.scopes.sort()).toEqual(['files:read', 'files:write']);
    expect(verified.audience).toEqual([RESOURCE]);
    expect(verified.expiresAt.getTime()).toBeGreaterThan(Date.now() + 500_000);
    expect(verified.expiresAt.getTime()).toBeLessThanOrEqual(Date.now() + 600_000);
    expect(verified.boundKeyThumbprint).toBeUndefined();
  });

  it.each<[string, () => string | undefined, TokenErrorCode]>([
    ['no header', () => undefined, 'missing'],
    ['an empty header', () => '', 'missing'],
    ['another scheme', () => 'Basic YWxpY2U6c2VjcmV0', 'missing'],
    ['Bearer without a token', () => 'Bearer', 'malformed'],
    ['a token with spaces', () => 'Bearer abc def', 'malformed'],
    ['an opaque token', () => 'Bearer 8d3a0c7e9f', 'malformed'],
    ['a JWT that is not an access token (typ JWT)', () => bearer(`${b64({ alg: 'ES256', typ: 'JWT' })}.${readToken.split('.')[1]}.${readToken.split('.')[2]}`), 'malformed'],
    ['alg none', () => bearer(`${b64({ alg: 'none', typ: 'at+jwt' })}.${readToken.split('.')[1]}.`), 'bad_signature'],
    ['HS256 (the key confusion attack)', () => bearer(`${b64({ alg: 'HS256', typ: 'at+jwt' })}.${readToken.split('.')[1]}.c2lnbmF0dXJl`), 'bad_signature'],
    ['a tampered signature', () => bearer(`${readToken.slice(0, -4)}${readToken.slice(-4) === 'AAAA' ? 'BBBB' : 'AAAA'}`), 'bad_signature'],
    [
      'a tampered payload (scope widened)',
      () => {
        const [h, p, s] = readToken.split('.');
        const claims = JSON.parse(Buffer.from(p!, 'base64url').toString()) as Record<string, unknown>;
        return bearer(`${h}.${b64({ ...claims, scope: 'files:read files:write' })}.${s}`);
      },
      'bad_signature',
    ],
    ['a token for another MCP server (no passthrough)', () => bearer(otherToken), 'wrong_audience'],
  ])('%s → %s', async (_what, header, code) => {
    expect((await refusal(header())).code).toBe(code);
  });

  it('a token issued by another issuer with the same keys is wrong_issuer', async () => {
    // A second instance on the same database shares the keys but has its own issuer URL.
    const twin = await startTestApp({ database: app.database });
    try {
      const token = (await obtainTokens(twin.issuer, { scope: 'files:read' })).tokens.body.access_token;
      expect((await refusal(bearer(token))).code).toBe('wrong_issuer');
    } finally {
      await twin.close();
    }
  });

  it('expired and not yet valid, with the clock tolerance', async () => {
    const { exp, iat } = JSON.parse(Buffer.from(readToken.split('.')[1]!, 'base64url').toString()) as { exp: number; iat: number };
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime((exp + 31) * 1000);
    expect((await refusal(bearer(readToken))).code).toBe('expired');
    vi.setSystemTime((exp + 20) * 1000);
    await expect(verifyAccessToken(bearer(readToken), { issuer: app.issuer, resource: RESOURCE })).resolves.toBeDefined();
    expect((await refusal(bearer(readToken), { clockToleranceSeconds: 0 })).code).toBe('expired');
    vi.setSystemTime((iat - 120) * 1000);
    expect((await refusal(bearer(readToken))).code).toBe('not_yet_valid');
  });

  it('insufficient_scope names every scope the operation needs', async () => {
    const error = await refusal(bearer(readToken), { requiredScopes: ['files:read', 'files:write'] });
    expect(error.code).toBe('insufficient_scope');
    expect(error.requiredScopes).toEqual(['files:read', 'files:write']);
  });

  it('a broader scope satisfies a narrower one it includes', async () => {
    const includes = { 'files:write': ['files:read'] };
    const token = (await obtainTokens(app.issuer, { scope: 'files:write' })).tokens.body.access_token;
    expect((await refusal(bearer(token), { requiredScopes: ['files:read'] })).code).toBe('insufficient_scope');
    await expect(verifyAccessToken(bearer(token), { issuer: app.issuer, resource: RESOURCE, requiredScopes: ['files:read'], scopeIncludes: includes })).resolves.toBeDefined();
    // Never the other way round.
    expect((await refusal(bearer(readToken), { requiredScopes: ['files:write'], scopeIncludes: includes })).code).toBe('insufficient_scope');
  });

  it('an unreachable authorization server is "unavailable" (503), not a refusal of the token', async () => {
    const error = await refusal(bearer(readToken), { issuer: 'http://127.0.0.1:9' });
    expect(error.code).toBe('unavailable');
    expect(challenge(error, { resourceMetadataUrl: METADATA_URL })).toEqual({
      status: 503,
      headers: { 'Retry-After': '5' },
      body: { error: 'temporarily_unavailable', error_description: expect.any(String) },
    });
  });
});

describe('the exact challenges (RFC 6750 §3, RFC 9728 §5.1, MCP scope challenges)', () => {
  const answer = async (header: string | undefined, scopes: string[] = ['files:read']) => {
    const error = await refusal(header, { requiredScopes: scopes });
    return challenge(error, { resourceMetadataUrl: METADATA_URL, scopes });
  };

  it('no token: 401, resource_metadata and scope, no error code', async () => {
    expect(await answer(undefined)).toEqual({
      status: 401,
      headers: { 'WWW-Authenticate': `Bearer resource_metadata="${METADATA_URL}", scope="files:read"` },
      body: { error_description: 'an access token is required' },
    });
  });

  it.each<[string, () => string, string]>([
    ['malformed', () => 'Bearer 8d3a0c7e9f', 'the access token is not a JWT'],
    ['bad signature', () => bearer(`${readToken.slice(0, -4)}${readToken.slice(-4) === 'AAAA' ? 'BBBB' : 'AAAA'}`), "the access token's signature does not verify"],
    ['alg none', () => bearer(`${b64({ alg: 'none', typ: 'at+jwt' })}.${readToken.split('.')[1]}.`), 'tokens signed with none are not accepted'],
    ['wrong audience', () => bearer(otherToken), 'the access token is for another resource: get one for this MCP server'],
  ])('%s: 401 invalid_token', async (_what, header, description) => {
    expect((await answer(header())).headers['WWW-Authenticate']).toBe(
      `Bearer error="invalid_token", error_description="${description}", scope="files:read", resource_metadata="${METADATA_URL}"`,
    );
  });

  it('insufficient scope: 403 with every needed scope', async () => {
    const a = await answer(bearer(readToken), ['files:read', 'files:write']);
    expect(a.status).toBe(403);
    expect(a.headers['WWW-Authenticate']).toBe(
      `Bearer error="insufficient_scope", error_description="this needs the scopes files:read files:write", scope="files:read files:write", resource_metadata="${METADATA_URL}"`,
    );
    expect(a.body).toEqual({ error: 'insufficient_scope', error_description: 'this needs the scopes files:read files:write' });
  });

  it('the metadata URL is the path-suffixed RFC 9728 §3.1 form', () => {
    expect(protectedResourceMetadataUrl('https://mcp.example.com')).toBe(METADATA_URL);
    expect(protectedResourceMetadataUrl('https://mcp.example.com/mcp')).toBe('https://mcp.example.com/.well-known/oauth-protected-resource/mcp');
    expect(protectedResourceMetadataUrl('https://mcp.example.com/tools/v1/')).toBe('https://mcp.example.com/.well-known/oauth-protected-resource/tools/v1');
  });
});

describe('key rotation at Gatehouse', () => {
  it('resource servers keep accepting every token through a rotation, without a failed request', async () => {
    const rs = createResourceServer({ issuer: app.issuer, resource: RESOURCE, source: 'static', jwksMaxAgeSeconds: 1, jwksRefetchMinIntervalSeconds: 1 });
    const keys = createKeysService({ db: app.db, secretBox: createSecretBox(app.config.keyEncryptionKey) });
    const verifyAll = async (tokens: string[]) => {
      for (const t of tokens) await expect(rs.verify(bearer(t))).resolves.toMatchObject({ subject: accountId });
    };
    const before = (await obtainTokens(app.issuer)).tokens.body.access_token;
    await verifyAll([before]);
    const fetchesBefore = rs.authorizationServer.jwksFetches;

    // A rotation published ahead of use (GATEHOUSE_KEY_PUBLISH_LEAD): the running server reloads.
    const rotated = await rotateSigningKey({ keys, resources: app.resources, audit: app.audit }, { leadSeconds: 3600, defaultTokenTtl: 600, actor: 'test' });
    await app.reload();
    await verifyAll([before, (await obtainTokens(app.issuer)).tokens.body.access_token]);
    // The resource server refreshes its JWKS when it is older than its max age, and learns the new key before it signs.
    await new Promise((r) => setTimeout(r, 1100));
    await verifyAll([before]);
    expect(rs.authorizationServer.jwksFetches).toBe(fetchesBefore + 1);

    // The new key starts signing (its lead time has passed).
    await app.db.updateTable('keys').set({ activates_at: sql<Date>`now() - interval '1 second'` }).where('kid', '=', rotated.kid).execute();
    await app.reload();
    const after = (await obtainTokens(app.issuer)).tokens.body.access_token;
    expect(JSON.parse(Buffer.from(after.split('.')[0]!, 'base64url').toString()).kid).toBe(rotated.kid);
    await verifyAll([after, before]);
    // No fetch was needed for the new key: it was already known.
    expect(rs.authorizationServer.jwksFetches).toBe(fetchesBefore + 1);
  });

  it('a key the resource server has not seen yet (no lead time) is fetched at once on first use', async () => {
    const rs = createResourceServer({ issuer: app.issuer, resource: RESOURCE, source: 'static', jwksRefetchMinIntervalSeconds: 0 });
    await rs.verify(bearer((await obtainTokens(app.issuer)).tokens.body.access_token));
    const keys = createKeysService({ db: app.db, secretBox: createSecretBox(app.config.keyEncryptionKey) });
    const rotated = await rotateSigningKey({ keys, resources: app.resources, audit: app.audit }, { leadSeconds: 0, defaultTokenTtl: 600, actor: 'test' });
    await app.reload();
    const token = (await obtainTokens(app.issuer)).tokens.body.access_token;
    expect(JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()).kid).toBe(rotated.kid);
    await expect(rs.verify(bearer(token))).resolves.toMatchObject({ subject: accountId });
  });
});

describe('adapters', () => {
  async function serve(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ url: string; server: Server }> {
    const server = createServer(handler);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
  }

  it('Node/Express-shaped: req.auth for the MCP SDK; a token in the query string is ignored', async () => {
    const rs = createResourceServer({ issuer: app.issuer, resource: RESOURCE, source: 'static', scopes: ['files:read', 'files:write'] });
    const guard = requireToken(rs, { scopes: ['files:read'] });
    const { url, server } = await serve((req, res) => {
      void guard(req, res, () => {
        const auth = (req as IncomingMessage & { auth?: { clientId: string; scopes: string[]; expiresAt: number; resource: URL } }).auth!;
        res.end(JSON.stringify({ clientId: auth.clientId, scopes: auth.scopes, resource: auth.resource.href, expiresAt: auth.expiresAt }));
      });
    });
    try {
      const ok = await fetch(`${url}/mcp`, { headers: { authorization: bearer(readToken) } });
      expect(ok.status).toBe(200);
      expect(await ok.json()).toMatchObject({ scopes: ['files:read'], resource: `${RESOURCE}/`, expiresAt: expect.any(Number) });

      const inQuery = await fetch(`${url}/mcp?access_token=${readToken}`);
      expect(inQuery.status).toBe(401);
      expect(inQuery.headers.get('www-authenticate')).toBe(`Bearer resource_metadata="${METADATA_URL}", scope="files:read"`);
      expect(inQuery.headers.get('cache-control')).toBe('no-store');
    } finally {
      server.close();
    }
  });

  it('Koa: ctx.state.auth, and the challenge as the answer', async () => {
    const rs = createResourceServer({ issuer: app.issuer, resource: RESOURCE, source: 'static' });
    const koa = new Koa();
    koa.use(koaRequireToken(rs, { scopes: (ctx) => (ctx.path === '/write' ? ['files:write'] : ['files:read']) }));
    koa.use((ctx) => {
      ctx.body = { sub: (ctx.state.auth as { extra: { subject: string } }).extra.subject };
    });
    const { url, server } = await serve(koa.callback());
    try {
      const ok = await fetch(`${url}/read`, { headers: { authorization: bearer(readToken) } });
      expect(await ok.json()).toEqual({ sub: accountId });
      const denied = await fetch(`${url}/write`, { headers: { authorization: bearer(readToken) } });
      expect(denied.status).toBe(403);
      expect(denied.headers.get('www-authenticate')).toBe(
        `Bearer error="insufficient_scope", error_description="this needs the scopes files:write", scope="files:write", resource_metadata="${METADATA_URL}"`,
      );
    } finally {
      server.close();
    }
  });
});

describe('scopes from Gatehouse\'s registry (the default source)', () => {
  it('the hierarchy declared at Gatehouse applies at the resource server, and edits reach it', async () => {
    const uri = 'https://registry-sourced.example.com/mcp';
    await app.resources.add({
      uri,
      name: 'Registry sourced',
      scopes: [
        { name: 'docs:read', description: 'Read documents' },
        { name: 'docs:admin', description: 'Manage documents', includes: ['docs:read'] },
      ],
      accessTokenTtl: 600,
    });
    const rs = createResourceServer({ issuer: app.issuer, resource: uri, registryMaxAgeSeconds: 0 });
    const admin = (await obtainTokens(app.issuer, { resource: uri, scope: 'docs:admin' })).tokens.body.access_token;
    await expect(rs.verify(bearer(admin), { scopes: ['docs:read'] })).resolves.toMatchObject({ scopes: ['docs:admin'] });
    expect(await rs.metadata()).toEqual({
      resource: uri,
      authorization_servers: [app.issuer],
      scopes_supported: ['docs:read', 'docs:admin'],
      bearer_methods_supported: ['header'],
      resource_name: 'Registry sourced',
    });

    // The administrator removes the include: the next check refuses.
    await app.resources.edit(uri, { scopes: [{ name: 'docs:read', description: 'Read documents' }, { name: 'docs:admin', description: 'Manage documents' }] });
    const error = await rs.verify(bearer(admin), { scopes: ['docs:read'] }).catch((e: unknown) => e);
    expect((error as TokenError).code).toBe('insufficient_scope');
  });

  it('a resource Gatehouse does not know is a clear error, not a silent pass', async () => {
    const rs = createResourceServer({ issuer: app.issuer, resource: 'https://unregistered.example.com/mcp' });
    const error = (await rs.verify(bearer(readToken)).catch((e: unknown) => e)) as TokenError;
    expect(error.code).toBe('unavailable');
    expect(error.description).toBe(`https://unregistered.example.com/mcp is not registered at ${app.issuer}: run \`gatehouse resource add https://unregistered.example.com/mcp\``);
  });
});
