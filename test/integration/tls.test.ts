/**
 * Transport (issue 4 §4, §5): Gatehouse serving TLS itself from certificate files, HSTS under https,
 * and `__Host-` cookies on the public listener — through `startServer`, the code `gatehouse serve`
 * runs, with the committed test certificate (test/fixtures/tls).
 */
import { copyFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAccountsService } from '../../src/accounts/accounts.service.ts';
import { createListener, loadTlsMaterial, reloadTlsIfChanged } from '../../src/app/tls.ts';
import { fromHostCookies, toHostCookie } from '../../src/http/host-cookies.ts';
import { startServer, type RunningServer } from '../../src/app/server.ts';
import { loadConfig } from '../../src/config/config.ts';
import { createLogger } from '../../src/http/logger.ts';
import { createResourcesService } from '../../src/resources/resources.service.ts';
import { TEST_PASSWORD } from '../support/app.ts';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { fetchTrusting, TLS_FIXTURES } from '../support/https-fetch.ts';
import { authorizationUrl, authorizeInBrowser, CookieJar, pkcePair, REDIRECT_URI } from '../support/oauth.ts';

const httpsFetch = fetchTrusting(TLS_FIXTURES.ca);

async function freePort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** The SHA-256 fingerprint of the certificate a TLS server presents. */
async function presentedCertificate(port: number): Promise<string> {
  return await new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false }, () => {
      const fingerprint = socket.getPeerCertificate().fingerprint256;
      socket.end();
      resolve(fingerprint);
    });
    socket.on('error', reject);
  });
}

function setCookies(response: Response): string[] {
  return response.headers.getSetCookie();
}

describe('native TLS, HSTS and __Host- cookies', () => {
  let database: TestDatabase;
  let running: RunningServer;
  let issuer: string;
  let adminUrl: string;

  beforeAll(async () => {
    database = await createTestDatabase();
    const [port, adminPort] = [await freePort(), await freePort()];
    issuer = `https://localhost:${port}`;
    adminUrl = `https://localhost:${adminPort}`;
    const config = loadConfig({
      DATABASE_URL: database.url ?? '',
      PORT: String(port),
      GATEHOUSE_HOST: '127.0.0.1',
      GATEHOUSE_ADMIN_PORT: String(adminPort),
      GATEHOUSE_ISSUER: issuer,
      GATEHOUSE_TLS_CERT_FILE: TLS_FIXTURES.certFile,
      GATEHOUSE_TLS_KEY_FILE: TLS_FIXTURES.keyFile,
      GATEHOUSE_KEY_ENCRYPTION_KEY: '22'.repeat(32),
      GATEHOUSE_CLIENT_APPROVAL: 'automatic',
      GATEHOUSE_LOG_LEVEL: 'silent',
    });
    expect(config.adminUrl).toBe(`https://localhost:${adminPort}`);
    running = await startServer(config, createLogger('silent'));
    await createResourcesService({ db: database.db }).add({
      uri: 'https://mcp.example.com',
      name: 'Example MCP',
      scopes: [{ name: 'files:read', description: 'Read your files' }],
      defaultScopes: ['files:read'],
      accessTokenTtl: 600,
    });
    await createAccountsService({ db: database.db }).create('alice@example.com', TEST_PASSWORD);
  });

  afterAll(async () => {
    await running?.stop();
    await database?.close();
  });

  it('serves discovery over TLS with HSTS, and the URL it reports is https', async () => {
    expect(running.url).toMatch(/^https:\/\//);
    expect(running.adminUrl).toMatch(/^https:\/\//);
    const response = await httpsFetch(`${issuer}/.well-known/oauth-authorization-server`);
    expect(response.status).toBe(200);
    expect(response.headers.get('strict-transport-security')).toBe('max-age=31536000');
    const metadata = (await response.json()) as Record<string, string>;
    expect(metadata.issuer).toBe(issuer);
    expect(metadata.token_endpoint).toBe(`${issuer}/token`);
  });

  it('the admin listener serves TLS too, with HSTS and __Host- Secure cookies', async () => {
    const response = await httpsFetch(`${adminUrl}/sign-in`);
    expect(response.status).toBe(200);
    expect(response.headers.get('strict-transport-security')).toBe('max-age=31536000');
    const cookies = setCookies(response);
    expect(cookies.length).toBeGreaterThan(0);
    for (const cookie of cookies) expect(cookie).toMatch(/^__Host-[^=]+=.*; path=\/.*; secure/i);
  });

  it('refuses plain http on the TLS port: no answer is ever sent in the clear', async () => {
    await expect(fetch(issuer.replace('https:', 'http:') + '/.well-known/oauth-authorization-server')).rejects.toThrow();
  });

  it('a whole sign-in runs on __Host- cookies (Secure, Path=/, no Domain), and two sign-ins in one browser do not collide', async () => {
    const registered = await httpsFetch(`${issuer}/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ client_name: 'TLS client', redirect_uris: [REDIRECT_URI], token_endpoint_auth_method: 'none' }),
    });
    expect(registered.status).toBe(201);
    const client = (await registered.json()) as { client_id: string };

    const start = (jar: CookieJar) => {
      const { verifier, challenge } = pkcePair();
      const url = authorizationUrl(issuer, {
        client_id: client.client_id,
        response_type: 'code',
        redirect_uri: REDIRECT_URI,
        code_challenge: challenge,
        code_challenge_method: 'S256',
        resource: 'https://mcp.example.com',
      });
      return { url, verifier, jar };
    };

    // Every cookie Gatehouse sets on the way carries the prefix and its rules.
    const first = await httpsFetch(start(new CookieJar()).url, { redirect: 'manual' });
    expect(first.status).toBe(303);
    const cookies = setCookies(first);
    expect(cookies.length).toBeGreaterThanOrEqual(2);
    for (const cookie of cookies) {
      expect(cookie).toMatch(/^__Host-/);
      expect(cookie).toMatch(/; path=\/(;|$)/);
      expect(cookie).toMatch(/; secure(;|$)/i);
      expect(cookie).toMatch(/; httponly/i);
      expect(cookie).not.toMatch(/domain=/i);
    }

    // One browser, two authorizations started before either finishes (two MCP servers connecting
    // at once): each interaction keeps its own cookie.
    const jar = new CookieJar();
    const a = start(jar);
    const b = start(jar);
    const { browse } = await import('../support/oauth.ts');
    const toLoginA = await browse(jar, a.url, {}, httpsFetch);
    const toLoginB = await browse(jar, b.url, {}, httpsFetch);
    expect(toLoginA.status).toBe(303);
    expect(toLoginB.status).toBe(303);
    const resultA = await authorizeInBrowser(new URL(toLoginA.headers.get('location')!, issuer), { jar, fetch: httpsFetch });
    const resultB = await authorizeInBrowser(new URL(toLoginB.headers.get('location')!, issuer), { jar, fetch: httpsFetch });
    for (const [result, flow] of [[resultA, a], [resultB, b]] as const) {
      const code = result.callback.searchParams.get('code');
      expect(code, String(result.callback)).toBeTruthy();
      const token = await httpsFetch(`${issuer}/token`, {
        method: 'POST',
        body: new URLSearchParams({
          grant_type: 'authorization_code',
          code: code!,
          code_verifier: flow.verifier,
          redirect_uri: REDIRECT_URI,
          client_id: client.client_id,
          resource: 'https://mcp.example.com',
        }),
      });
      expect(token.status).toBe(200);
      expect(token.headers.get('cache-control')).toBe('no-store');
      expect(token.headers.get('strict-transport-security')).toBe('max-age=31536000');
    }
  });

  it('a cookie without the __Host- prefix is ignored: a planted session cannot stand in for a real one', async () => {
    // Sign in once, then replay the session cookie under its bare name (as a sibling subdomain or a
    // plain-http peer could plant it): Gatehouse does not see a session and asks to sign in.
    const registered = await httpsFetch(`${issuer}/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ client_name: 'TLS client 2', redirect_uris: [REDIRECT_URI], token_endpoint_auth_method: 'none' }),
    });
    const client = (await registered.json()) as { client_id: string };
    const params = () => {
      const { challenge } = pkcePair();
      return authorizationUrl(issuer, {
        client_id: client.client_id,
        response_type: 'code',
        redirect_uri: REDIRECT_URI,
        code_challenge: challenge,
        code_challenge_method: 'S256',
        resource: 'https://mcp.example.com',
      });
    };
    const jar = new CookieJar();
    await authorizeInBrowser(params(), { jar, fetch: httpsFetch });
    const session = jar.header(new URL(issuer)).split('; ').filter((c) => c.startsWith('__Host-gh_session'));
    expect(session.length).toBe(2); // the cookie and its signature

    /** The first page an authorization request leads to, for a browser sending these cookies. */
    const firstPage = async (cookies: string[]) => {
      const start = await httpsFetch(params(), { redirect: 'manual', headers: { cookie: cookies.join('; ') } });
      expect(start.status).toBe(303);
      const fresh = setCookies(start).map((c) => c.split(';')[0]!);
      const page = await httpsFetch(new URL(start.headers.get('location')!, issuer), { headers: { cookie: [...cookies, ...fresh].join('; ') } });
      expect(page.status).toBe(200);
      return await page.text();
    };
    // With the real cookies, the user is known: the consent page, no password.
    expect(await firstPage(session)).not.toContain('name="password"');
    // The same values under the bare names (as a sibling subdomain or a plain-http peer could plant
    // them) are not a session: the sign-in page.
    expect(await firstPage(session.map((c) => c.replace(/^__Host-/, '')))).toContain('name="password"');
  });

  it('records each start-up warning as a config.warning audit event', async () => {
    const rows = await database.db.selectFrom('audit_events').select(['event', 'details']).where('event', '=', 'config.warning').execute();
    expect(rows.map((r) => (r.details as { message: string }).message)).toEqual([
      expect.stringContaining('GATEHOUSE_CLIENT_APPROVAL=automatic'),
    ]);
  });
});

describe('certificate renewal', () => {
  it('a changed certificate file is served without a restart; an unusable one keeps the old', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-tls-'));
    const files = { certFile: join(dir, 'cert.pem'), keyFile: join(dir, 'key.pem') };
    copyFileSync(TLS_FIXTURES.certFile, files.certFile);
    copyFileSync(TLS_FIXTURES.keyFile, files.keyFile);
    const material = await loadTlsMaterial(files);
    const server = createListener((_req, res) => res.end('ok'), material) as import('node:https').Server;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const logger = createLogger('silent');
    try {
      const original = await presentedCertificate(port);
      expect(await reloadTlsIfChanged(files, material, [server], logger)).toBe(false);

      copyFileSync(TLS_FIXTURES.renewedCertFile, files.certFile);
      copyFileSync(TLS_FIXTURES.renewedKeyFile, files.keyFile);
      expect(await reloadTlsIfChanged(files, material, [server], logger)).toBe(true);
      const renewed = await presentedCertificate(port);
      expect(renewed).not.toBe(original);

      // Half-written renewal: the certificate no longer matches its key. Still serving the last good one.
      copyFileSync(TLS_FIXTURES.certFile, files.certFile);
      expect(await reloadTlsIfChanged(files, material, [server], logger)).toBe(false);
      writeFileSync(files.keyFile, 'not a key');
      expect(await reloadTlsIfChanged(files, material, [server], logger)).toBe(false);
      expect(await presentedCertificate(port)).toBe(renewed);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('start-up fails with a clear message when the files are missing or do not match', async () => {
    await expect(loadTlsMaterial({ certFile: '/nonexistent/cert.pem', keyFile: TLS_FIXTURES.keyFile })).rejects.toThrow(
      /cannot read the TLS certificate \/nonexistent\/cert.pem: ENOENT/,
    );
    await expect(loadTlsMaterial({ certFile: TLS_FIXTURES.certFile, keyFile: TLS_FIXTURES.renewedKeyFile })).rejects.toThrow(
      /cannot be used together/,
    );
  });
});

describe('the __Host- cookie rewriting', () => {
  it('moves a path into the name, and gives the cookie back only under that path (RFC 6265 §5.1.4)', () => {
    const out = toHostCookie('gh_resume=abc; path=/authorize/abc; expires=Sat, 21 Nov 2026 10:00:00 GMT; samesite=lax; httponly');
    expect(out).toMatch(/^__Host-gh_resume~[A-Za-z0-9_-]+=abc; path=\/; expires=Sat, 21 Nov 2026 10:00:00 GMT; samesite=lax; httponly; secure$/);
    const name = out.split('=')[0]!;
    expect(fromHostCookies(`${name}=abc`, '/authorize/abc')).toBe('gh_resume=abc');
    expect(fromHostCookies(`${name}=abc`, '/authorize/abc/more')).toBe('gh_resume=abc');
    expect(fromHostCookies(`${name}=abc`, '/authorize/abcd')).toBe('');
    expect(fromHostCookies(`${name}=abc`, '/authorize')).toBe('');
    expect(fromHostCookies(`${name}=abc`, '/')).toBe('');
  });

  it('a root cookie keeps its name behind the prefix; Domain is dropped and Secure added', () => {
    expect(toHostCookie('gh_session=s1; path=/; domain=example.com; httponly')).toBe('__Host-gh_session=s1; path=/; httponly; secure');
    expect(toHostCookie('gh_session.sig=x; path=/; secure; httponly')).toBe('__Host-gh_session.sig=x; path=/; httponly; secure');
    // Already prefixed (Koa re-sets the whole list each time): unchanged.
    expect(toHostCookie('__Host-gh_session=s1; path=/; secure')).toBe('__Host-gh_session=s1; path=/; secure');
  });

  it('incoming: bare names and malformed path tokens are dropped; longer paths come first', () => {
    const deep = toHostCookie('n=deep; path=/a/b').split(';')[0]!;
    const shallow = toHostCookie('n=shallow; path=/a').split(';')[0]!;
    expect(fromHostCookies(`${shallow}; ${deep}; n=planted; __Host-n~%%%=bad; __Host-root=1`, '/a/b/c')).toBe('n=deep; n=shallow; root=1');
  });
});
