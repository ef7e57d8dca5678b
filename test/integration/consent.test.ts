/**
 * Sign-in and consent as a user sees them: labelled fields, what the client asks for, remembered
 * consent, asking again for more scopes, and denial.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { seed, startTestApp, type TestApp } from '../support/app.ts';
import { CookieJar, REDIRECT_URI, authorizationUrl, authorizeInBrowser, browse, pkcePair, registerClient } from '../support/oauth.ts';

let app: TestApp;
let client: Record<string, any>;
beforeAll(async () => {
  app = await startTestApp();
  await seed(app);
  client = await registerClient(app.issuer, { client_name: 'Claude <Desktop> & Co' });
});
afterAll(() => app?.close());

function url(scope?: string, c = client) {
  return authorizationUrl(app.issuer, {
    client_id: c.client_id,
    response_type: 'code',
    redirect_uri: c.redirect_uris[0],
    code_challenge: pkcePair().challenge,
    code_challenge_method: 'S256',
    resource: 'https://mcp.example.com',
    scope,
    state: 'xyz',
  });
}

describe('pages', () => {
  test('the login page has labelled Email and Password fields and a Sign in button, and escapes the client name', async () => {
    const jar = new CookieJar();
    const start = await browse(jar, url());
    const page = await browse(jar, new URL(start.headers.get('location')!, app.issuer));
    const html = await page.text();
    expect(page.status).toBe(200);
    expect(html).toMatch(/<label for="email">Email<\/label>/);
    expect(html).toMatch(/<input id="email" name="email" type="email"/);
    expect(html).toMatch(/<label for="password">Password<\/label>/);
    expect(html).toMatch(/<button type="submit" class="primary">Sign in<\/button>/);
    expect(html).toContain('Claude &lt;Desktop&gt; &amp; Co');
    expect(html).not.toContain('<script');
    expect(page.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    expect(page.headers.get('cache-control')).toBe('no-store');
  });

  test('a wrong password shows an error and signs nobody in', async () => {
    const jar = new CookieJar();
    const start = await browse(jar, url());
    const loginUrl = new URL(start.headers.get('location')!, app.issuer);
    const html = await (await browse(jar, loginUrl)).text();
    const csrf = /name="csrf" value="([^"]+)"/.exec(html)![1]!;
    const response = await browse(jar, `${loginUrl}/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ csrf, email: 'alice@example.com', password: 'wrong password' }),
    });
    expect(response.status).toBe(401);
    expect(await response.text()).toContain('do not match an account');
  });

  test('a form without the CSRF token is refused', async () => {
    const jar = new CookieJar();
    const start = await browse(jar, url());
    const loginUrl = new URL(start.headers.get('location')!, app.issuer);
    await browse(jar, loginUrl);
    const response = await browse(jar, `${loginUrl}/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ email: 'alice@example.com', password: 'correct horse battery staple' }),
    });
    expect(response.status).toBe(403);
  });

  test('the consent page shows the client, the redirect host, the MCP server and each scope in words', async () => {
    const { pages } = await authorizeInBrowser(url('files:read files:write'));
    const consent = pages.find((p) => p.includes('Allow access?'))!;
    expect(consent).toBeTruthy();
    expect(consent).toContain('Claude &lt;Desktop&gt; &amp; Co');
    expect(consent).toContain('127.0.0.1:53682');
    expect(consent).toContain('Example MCP');
    expect(consent).toContain('Read your files');
    expect(consent).toContain('Change your files');
    expect(consent).toMatch(/>Allow<\/button>/);
    expect(consent).toMatch(/>Deny<\/button>/);
    expect(consent).toContain('on your own computer');
  });

  test('an expired or unknown interaction shows a clear page', async () => {
    const response = await fetch(`${app.issuer}/interaction/does-not-exist`);
    expect(response.status).toBe(400);
    expect(await response.text()).toContain('expired');
  });
});

describe('remembered consent', () => {
  test('consent is remembered per user and client; more scopes ask again; another client asks again', async () => {
    const c = await registerClient(app.issuer, { client_name: 'Remembering client' });
    const first = await authorizeInBrowser(url('files:read', c));
    expect(first.callback.searchParams.get('code')).toBeTruthy();
    expect(first.pages.some((p) => p.includes('Allow access?'))).toBe(true);

    // New browser (new session): sign in again, but no consent page for the same scopes.
    const second = await authorizeInBrowser(url('files:read', c));
    expect(second.callback.searchParams.get('code')).toBeTruthy();
    expect(second.pages.some((p) => p.includes('Allow access?'))).toBe(false);

    // Asking for more asks again, and only for what is new.
    const third = await authorizeInBrowser(url('files:read files:write', c));
    const consent = third.pages.find((p) => p.includes('Allow access?'));
    expect(consent).toBeTruthy();
    expect(consent).toContain('Change your files');
    expect(consent).not.toContain('Read your files');

    const other = await registerClient(app.issuer, { client_name: 'Another client' });
    const fourth = await authorizeInBrowser(url('files:read', other));
    expect(fourth.pages.some((p) => p.includes('Allow access?'))).toBe(true);
  });

  test('authorizing again renews the remembered grant\'s lifetime, so refresh keeps working for the full absolute lifetime', async () => {
    const c = await registerClient(app.issuer, { client_name: 'Renewing client' });
    await authorizeInBrowser(url('files:read', c));
    const soon = new Date(Date.now() + 60_000);
    await app.db.updateTable('oidc_payloads').set({ expires_at: soon }).where('model', '=', 'Grant').where('client_id', '=', c.client_id).execute();
    const again = await authorizeInBrowser(url('files:read', c));
    expect(again.pages.some((p) => p.includes('Allow access?'))).toBe(false);
    const grant = await app.db.selectFrom('oidc_payloads').select('expires_at').where('model', '=', 'Grant').where('client_id', '=', c.client_id).executeTakeFirstOrThrow();
    expect((grant.expires_at!.getTime() - Date.now()) / 86_400_000).toBeGreaterThan(89);
  });

  test('a native client never gets a code silently: with a live session, the consent page shows again (RFC 8252 §8.6)', async () => {
    const c = await registerClient(app.issuer, { client_name: 'Native client' });
    const jar = new CookieJar();
    await authorizeInBrowser(url('files:read', c), { jar });
    const again = await authorizeInBrowser(url('files:read', c), { jar });
    expect(again.pages.some((p) => p.includes('Sign in'))).toBe(false);
    expect(again.pages.some((p) => p.includes('Allow access?'))).toBe(true);
    expect(again.callback.searchParams.get('code')).toBeTruthy();
  });

  test('denying returns access_denied to the client with iss and state', async () => {
    const c = await registerClient(app.issuer, { client_name: 'Denied client' });
    const { callback } = await authorizeInBrowser(url('files:read', c), { decision: 'deny' });
    expect(`${callback.origin}${callback.pathname}`).toBe(REDIRECT_URI);
    expect(callback.searchParams.get('error')).toBe('access_denied');
    expect(callback.searchParams.get('iss')).toBe(app.issuer);
    expect(callback.searchParams.get('state')).toBe('xyz');
    expect(callback.searchParams.get('code')).toBeNull();
  });
});

test('a browser signed in as an account that was disabled since is asked to sign in again (never a 500)', async () => {
  const bob = await app.accounts.create('bob@example.com', 'bob has a long password');
  const jar = new CookieJar();
  const first = await authorizeInBrowser(url(), { jar, email: 'bob@example.com', password: 'bob has a long password' });
  expect(first.callback.searchParams.get('code')).toBeTruthy();
  // Disabled behind Gatehouse's back (not through the console, which also ends sessions).
  await app.db.updateTable('accounts').set({ disabled_at: new Date() }).where('id', '=', bob.id).execute();
  const start = await browse(jar, url());
  expect(start.status).toBe(303);
  const page = await browse(jar, new URL(start.headers.get('location')!, app.issuer));
  expect(page.status).toBe(200);
  expect(await page.text()).toMatch(/name="password"/);
});
