/**
 * The admin console on its own listener (issue 3): who may use it, how its forms are protected,
 * and that its actions do what they say, including on the client's next refresh.
 */
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { lockoutSeconds } from '../../src/accounts/sign-in-throttle.ts';
import { ADMIN_EMAIL, ADMIN_PASSWORD, createAdmin, csrfOf, formBody, signInAdmin, type AdminBrowser } from '../support/admin.ts';
import { seed, startTestApp, TEST_PASSWORD, type TestApp } from '../support/app.ts';
import { authorizeForCode, browse, CookieJar, exchangeCode, registerClient, tokenRequest } from '../support/oauth.ts';

const RESOURCE = 'https://mcp.example.com';
let app: TestApp;
let admin: AdminBrowser;
let client: Record<string, any>;

beforeAll(async () => {
  app = await startTestApp({ env: { GATEHOUSE_CLIENT_APPROVAL: 'manual' } });
  await seed(app, { uri: RESOURCE });
  await createAdmin(app);
  admin = await signInAdmin(app);
  client = await registerClient(app.issuer, { client_name: 'Console Client' });
});
afterAll(() => app?.close());

const clientPath = () => `/clients/${encodeURIComponent(client.client_id)}`;
const PAGES = ['/pending', '/clients', '/clients?status=pending', '/audit', '/clients/anything'];
const ACTIONS = () => [`${clientPath()}/approve`, `${clientPath()}/reject`, `${clientPath()}/suspend`, '/sign-out'];

describe('who may use the console', () => {
  test('anonymous visitors are sent to sign-in for every page, and refused every action', async () => {
    const jar = new CookieJar();
    for (const path of PAGES) {
      const response = await browse(jar, `${app.adminUrl}${path}`);
      expect(response.status, path).toBe(303);
      expect(response.headers.get('location')).toBe('/sign-in');
    }
    for (const path of ACTIONS()) {
      const response = await browse(jar, `${app.adminUrl}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', origin: app.adminUrl },
        body: formBody({ csrf: 'x', scope: `${RESOURCE} files:read` }),
      });
      expect(response.status, path).toBe(401);
    }
    expect((await app.clients.get(client.client_id))?.status).toBe('pending');
  });

  test('a user who is not an administrator cannot sign in, even with the right password', async () => {
    await expect(signInAdmin(app, 'alice@example.com', TEST_PASSWORD)).rejects.toThrow(/admin sign-in failed: 401/);
    const events = await app.audit.list({ event: 'admin.sign_in_failed' });
    expect(events[0]?.details).toEqual({ email: 'alice@example.com' });
  });

  test('the console is not on the public listener', async () => {
    expect((await fetch(`${app.issuer}/pending`)).status).toBe(404);
    expect((await fetch(`${app.issuer}/sign-in`)).status).toBe(404);
  });

  test('the session cookie is HttpOnly and SameSite=Strict, and sign-out ends the session', async () => {
    const jar = new CookieJar();
    const page = await browse(jar, `${app.adminUrl}/sign-in`);
    const response = await browse(jar, `${app.adminUrl}/sign-in`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: app.adminUrl },
      body: formBody({ csrf: csrfOf(await page.text()), email: ADMIN_EMAIL, password: ADMIN_PASSWORD }),
    });
    const cookie = response.headers.getSetCookie().find((c) => c.startsWith('gh_admin='))!;
    expect(cookie).toMatch(/httponly/i);
    expect(cookie).toMatch(/samesite=strict/i);
    expect(cookie).toMatch(/path=\//i);
    const pending = await browse(jar, `${app.adminUrl}/pending`);
    const csrf = csrfOf(await pending.text());
    const out = await browse(jar, `${app.adminUrl}/sign-out`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: app.adminUrl },
      body: formBody({ csrf }),
    });
    expect(out.status).toBe(303);
    // The old cookie value no longer opens anything.
    const stale = new CookieJar();
    stale.store(new Response(null, { headers: { 'set-cookie': cookie.split(';')[0]! } }));
    expect((await browse(stale, `${app.adminUrl}/pending`)).status).toBe(303);
  });

  test('under an https admin URL the cookie is __Host- prefixed and Secure, and HSTS is sent', async () => {
    const secureApp = await startTestApp({ database: app.database, env: { GATEHOUSE_ADMIN_URL: 'https://admin.example.com' } });
    try {
      const jar = new CookieJar();
      const page = await browse(jar, `${secureApp.adminUrl}/sign-in`);
      expect(page.headers.get('strict-transport-security')).toMatch(/max-age=\d+/);
      const cookie = page.headers.getSetCookie().find((c) => c.startsWith('__Host-gh_admin_csrf='));
      expect(cookie).toMatch(/secure/i);
      const signedIn = await fetch(`${secureApp.adminUrl}/sign-in`, {
        method: 'POST',
        redirect: 'manual',
        headers: { 'content-type': 'application/x-www-form-urlencoded', origin: 'https://admin.example.com', cookie: cookie!.split(';')[0]! },
        body: formBody({ csrf: csrfOf(await page.text()), email: ADMIN_EMAIL, password: ADMIN_PASSWORD }),
      });
      expect(signedIn.status).toBe(303);
      const session = signedIn.headers.getSetCookie().find((c) => c.startsWith('__Host-gh_admin='));
      expect(session).toMatch(/secure/i);
      expect(session).toMatch(/httponly/i);
      expect(session).toMatch(/samesite=strict/i);
    } finally {
      await secureApp.close();
    }
  });
});

describe('forms are protected', () => {
  const approveFields = () => ({ scope: `${RESOURCE} files:read` });

  test('a missing or wrong CSRF token is refused and changes nothing', async () => {
    for (const csrf of ['', 'wrong-token', `${admin.csrf}x`]) {
      const response = await admin.post(`${clientPath()}/approve`, approveFields(), { csrf });
      expect(response.status).toBe(403);
    }
    expect((await app.clients.get(client.client_id))?.status).toBe('pending');
  });

  test('a cross-origin form post is refused even with a valid token', async () => {
    for (const headers of [
      { origin: 'https://evil.example.com' },
      { origin: 'null' },
      { origin: 'null', 'sec-fetch-site': 'cross-site' },
      { 'sec-fetch-site': 'cross-site' },
      { 'sec-fetch-site': 'same-site' },
    ] as Record<string, string>[]) {
      const response = await admin.post(`${clientPath()}/approve`, approveFields(), { headers });
      expect(response.status, JSON.stringify(headers)).toBe(403);
    }
    expect((await app.clients.get(client.client_id))?.status).toBe('pending');
  });

  test('a browser\'s own form under no-referrer (Origin: null, Sec-Fetch-Site: same-origin) is accepted', async () => {
    const response = await admin.post('/clients/no-such-client/suspend', {}, { headers: { origin: 'null', 'sec-fetch-site': 'same-origin' } });
    expect(response.status).toBe(404); // got past the origin check, to the route
  });

  test('a stray request (a favicon) does not invalidate the sign-in form already on screen', async () => {
    const jar = new CookieJar();
    const page = await browse(jar, `${app.adminUrl}/sign-in`);
    const csrf = csrfOf(await page.text());
    expect((await browse(jar, `${app.adminUrl}/favicon.ico`)).status).toBe(204);
    await browse(jar, `${app.adminUrl}/sign-in`); // a second tab
    const response = await browse(jar, `${app.adminUrl}/sign-in`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: 'null', 'sec-fetch-site': 'same-origin' },
      body: formBody({ csrf, email: ADMIN_EMAIL, password: ADMIN_PASSWORD }),
    });
    expect(response.status).toBe(303);
  });

  test('the sign-in form needs its own token too', async () => {
    const response = await fetch(`${app.adminUrl}/sign-in`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: app.adminUrl },
      body: formBody({ email: ADMIN_EMAIL, password: ADMIN_PASSWORD }),
    });
    expect(response.status).toBe(403);
    expect(response.headers.getSetCookie().some((c) => c.startsWith('gh_admin='))).toBe(false);
  });
});

describe('lockout with backoff', () => {
  test('the schedule: five free failures, then 30 s doubling up to an hour', () => {
    expect([4, 5, 6, 7, 20].map((n) => lockoutSeconds(n))).toEqual([0, 30, 60, 120, 3600]);
    expect(lockoutSeconds(19, 20)).toBe(0); // an address gets more room: a NAT may hide an office
  });

  test('after five failures the account is locked, even for the right password, with Retry-After', async () => {
    await createAdmin(app, 'locked@example.com');
    const attempt = async (password: string) => {
      const jar = new CookieJar();
      const page = await browse(jar, `${app.adminUrl}/sign-in`);
      return browse(jar, `${app.adminUrl}/sign-in`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', origin: app.adminUrl, 'x-forwarded-for': '198.51.100.9' },
        body: formBody({ csrf: csrfOf(await page.text()), email: 'locked@example.com', password }),
      });
    };
    for (let i = 0; i < 5; i++) expect((await attempt('wrong password!')).status).toBe(401);
    const locked = await attempt(ADMIN_PASSWORD);
    expect(locked.status).toBe(429);
    expect(Number(locked.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(await locked.text()).toMatch(/Too many failed sign-ins/);
  });
});

describe('actions do what they say', () => {
  test('the client page shows what it asked for and pre-selects it', async () => {
    const asking = await registerClient(app.issuer, { client_name: 'Asking Client', scope: 'files:write' });
    const html = await (await admin.get(`/clients/${encodeURIComponent(asking.client_id)}`)).text();
    expect(html).toMatch(/Scopes it asked for at registration<\/dt><dd><code>files:write<\/code>/);
    expect(html).toMatch(/value="https:\/\/mcp\.example\.com files:write">[^<]*<code class="scope-name">files:write<\/code> <span class="tag">asked for<\/span>/);
    // Not approved and never tried to authorize: the MCP server's default scopes are pre-selected.
    expect(html).toMatch(/value="https:\/\/mcp\.example\.com files:read" checked/);
  });

  test('the pending queue lists the client, and the navigation counts it', async () => {
    const html = await (await admin.get('/pending')).text();
    expect(html).toContain('Console Client');
    expect(html).toMatch(/Pending <span class="count"[^>]*>\d+<\/span>/);
  });

  test('approve with a subset of scopes, then lower nothing: the token carries exactly the approved scopes', async () => {
    const approved = await admin.post(`${clientPath()}/approve`, { scope: [`${RESOURCE} files:read`] });
    expect(approved.status).toBe(303);
    expect(await app.clients.get(client.client_id)).toMatchObject({ status: 'approved', ceiling: { [RESOURCE]: ['files:read'] }, statusChangedBy: `admin:${ADMIN_EMAIL}` });
    const { code, verifier } = await authorizeForCode(app.issuer, client, { resource: RESOURCE, scope: 'files:read files:write' });
    const tokens = await exchangeCode(app.issuer, client, code, verifier, RESOURCE);
    expect(decodeJwt(tokens.body.access_token).scope).toBe('files:read');
    client.refresh = tokens.body.refresh_token;

    const detail = await (await admin.get(clientPath())).text();
    expect(detail).toContain('Console Client');
    expect(detail).toMatch(/Active authorizations<\/dt><dd>1</);
    expect(detail).toMatch(/value="https:\/\/mcp\.example\.com files:read" checked/);
    expect(detail).toContain('client.approved');
  });

  test('an empty ceiling is refused with a message, and nothing changes', async () => {
    const response = await admin.post(`${clientPath()}/approve`, {});
    expect(response.status).toBe(400);
    expect(await response.text()).toContain('choose at least one MCP server');
    expect((await app.clients.get(client.client_id))?.ceiling).toEqual({ [RESOURCE]: ['files:read'] });
  });

  test('suspend revokes at once: the next refresh fails', async () => {
    const response = await admin.post(`${clientPath()}/suspend`, { reason: 'testing suspension' });
    expect(response.status).toBe(303);
    const refreshed = await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: client.refresh, client_id: client.client_id });
    expect(refreshed.body.error).toBe('invalid_grant');
    const html = await (await admin.get(clientPath())).text();
    expect(html).toContain('testing suspension');
    expect(html).toMatch(/class="status suspended"/);
  });

  test('reject, and the audit page shows who did what', async () => {
    expect((await admin.post(`${clientPath()}/reject`, { reason: 'not for us' })).status).toBe(303);
    expect((await app.clients.get(client.client_id))?.status).toBe('rejected');
    const audit = await (await admin.get(`/audit?client=${encodeURIComponent(client.client_id)}`)).text();
    for (const event of ['client.registered', 'client.approved', 'client.suspended', 'client.rejected']) expect(audit).toContain(event);
    expect(audit).toContain(`admin:${ADMIN_EMAIL}`);
    const filtered = await (await admin.get('/audit?event=admin.sign_in_succeeded')).text();
    expect(filtered).toContain('<td><code>admin.sign_in_succeeded</code></td>');
    expect(filtered).not.toContain('<td><code>client.rejected</code></td>');
  });

  test('an unknown client is a 404 page', async () => {
    expect((await admin.get('/clients/no-such-client')).status).toBe(404);
  });
});
