/**
 * Sign-in throttling under concurrency, and not as a denial-of-service tool (issue 15 §2–§3,
 * docs/security.md I-36): every attempt is reserved in PostgreSQL before argon2 runs, so a parallel
 * burst gets no more password checks than the budget, on one instance or two; and a device that
 * signed in before keeps its own budget while wrong passwords arrive from elsewhere.
 *
 * Both apps trust X-Forwarded-For (GATEHOUSE_TRUST_PROXY), so each test picks its own addresses.
 * Password checks are counted by their `*.sign_in_failed` audit events.
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createDeviceCookies, DEVICE_COOKIE_SECONDS } from '../../src/accounts/device-cookies.ts';
import { ACCOUNT, ACCOUNT_ADDRESS } from '../../src/accounts/sign-in-throttle.ts';
import { ADMIN_PASSWORD, createAdmin, csrfOf, formBody } from '../support/admin.ts';
import { seed, startTestApp, type TestApp } from '../support/app.ts';
import { authorizeInBrowser, browse, codeAuthorizationUrl, CookieJar, registerClient } from '../support/oauth.ts';

const RESOURCE = 'https://mcp.example.com';
const USER_PASSWORD = 'the owner’s long password';
const TRUSTING_PROXY = { GATEHOUSE_TRUST_PROXY: 'true' };

let app: TestApp;
/** A second instance on the same database. */
let twin: TestApp;
let client: Record<string, any>;

beforeAll(async () => {
  app = await startTestApp({ env: TRUSTING_PROXY });
  twin = await startTestApp({ env: TRUSTING_PROXY, database: app.database });
  await seed(app, { uri: RESOURCE });
  client = await registerClient(app.issuer);
});

afterAll(async () => {
  await twin?.close();
  await app?.close();
});

/** How many passwords were checked (and found wrong) for this email. */
async function passwordChecks(event: 'admin.sign_in_failed' | 'user.sign_in_failed', email: string): Promise<number> {
  const row = await app.db
    .selectFrom('audit_events')
    .select(sql<number>`count(*)::int`.as('n'))
    .where('event', '=', event)
    .where(sql<string>`details->>'email'`, '=', email)
    .executeTakeFirstOrThrow();
  return row.n;
}

/** An admin sign-in form, opened and ready to post from `address` (CSRF token and cookie in hand). */
async function adminForm(target: TestApp, address: string, jar = new CookieJar()) {
  const page = await browse(jar, `${target.adminUrl}/sign-in`, { headers: { 'x-forwarded-for': address } });
  const csrf = csrfOf(await page.text());
  return (email: string, password: string) =>
    browse(jar, `${target.adminUrl}/sign-in`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: target.adminUrl, 'x-forwarded-for': address },
      body: formBody({ csrf, email, password }),
    });
}

/** A fetch that says it comes from `address` through the trusted proxy. */
const fromAddress =
  (address: string, seen?: string[]): typeof fetch =>
  async (input, init = {}) => {
    const headers = new Headers(init.headers);
    headers.set('x-forwarded-for', address);
    const response = await fetch(input, { ...init, headers });
    seen?.push(...response.headers.getSetCookie());
    return response;
  };

/** The user login page of a new authorization request, ready to post from `address`. */
async function userLoginForm(address: string) {
  const jar = new CookieJar();
  const go = fromAddress(address);
  const url = codeAuthorizationUrl(app.issuer, client, { resource: RESOURCE });
  let response = await browse(jar, url, {}, go);
  while (response.status >= 300 && response.status < 400) response = await browse(jar, new URL(response.headers.get('location')!, app.issuer), {}, go);
  const html = await response.text();
  const action = /<form method="post" action="([^"]+)"/.exec(html)?.[1];
  const csrf = /name="csrf" value="([^"]*)"/.exec(html)?.[1];
  if (!action || !csrf || !action.endsWith('/login')) throw new Error(`not a login page: ${html.slice(0, 300)}`);
  return (email: string, password: string) =>
    browse(jar, new URL(action, app.issuer), { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: formBody({ csrf, email, password }) }, go);
}

const statuses = (responses: Response[]) => responses.map((r) => r.status).sort();

describe('a parallel burst gets no more password checks than the budget', () => {
  test('40 parallel wrong admin passwords from one address: at most five are checked, the rest are refused with Retry-After', async () => {
    const email = 'burst-admin@example.com';
    await createAdmin(app, email);
    const forms = await Promise.all(Array.from({ length: 40 }, () => adminForm(app, '198.51.100.1')));
    const responses = await Promise.all(forms.map((post) => post(email, 'a wrong password!')));
    const checked = await passwordChecks('admin.sign_in_failed', email);
    expect(checked).toBeLessThanOrEqual(ACCOUNT_ADDRESS.free);
    expect(responses.filter((r) => r.status === 401)).toHaveLength(checked);
    expect(responses.filter((r) => r.status === 429)).toHaveLength(40 - checked);
    for (const refused of responses.filter((r) => r.status === 429)) expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
  });

  test('40 parallel wrong user passwords from one address: at most five are checked', async () => {
    const email = 'burst-user@example.com';
    await app.accounts.create(email, USER_PASSWORD);
    const forms = await Promise.all(Array.from({ length: 40 }, () => userLoginForm('198.51.100.2')));
    const responses = await Promise.all(forms.map((post) => post(email, 'a wrong password!')));
    const checked = await passwordChecks('user.sign_in_failed', email);
    expect(checked).toBeLessThanOrEqual(ACCOUNT_ADDRESS.free);
    expect(statuses(responses)).toEqual([...Array(checked).fill(401), ...Array(40 - checked).fill(429)]);
  });

  test('the right admin password inside a parallel burst of wrong ones does not sign in once the budget is spent', async () => {
    const email = 'burst-right@example.com';
    await createAdmin(app, email);
    const forms = await Promise.all(Array.from({ length: 40 }, () => adminForm(app, '198.51.100.3')));
    const right = forms.pop()!;
    const wrong = forms.map((post) => post(email, 'a wrong password!'));
    const responses = await Promise.all([...wrong, right(email, ADMIN_PASSWORD)]);
    const rightAnswer = responses.at(-1)!;
    const checked = await passwordChecks('admin.sign_in_failed', email);
    // The right password only counts if it was reserved before the budget ran out.
    expect(checked + (rightAnswer.status === 303 ? 1 : 0)).toBeLessThanOrEqual(ACCOUNT_ADDRESS.free);
    if (checked === ACCOUNT_ADDRESS.free) expect(rightAnswer.status).toBe(429);
    if (rightAnswer.status !== 303) {
      expect(rightAnswer.status).toBe(429);
      expect(rightAnswer.headers.getSetCookie().some((c) => /gh_admin=/.test(c))).toBe(false);
      // And the budget is spent: the right password now waits too.
      expect((await (await adminForm(app, '198.51.100.3'))(email, ADMIN_PASSWORD)).status).toBe(429);
    }
  });

  test('the budget holds across two instances on one database', async () => {
    const email = 'burst-twins@example.com';
    await createAdmin(app, email);
    const forms = await Promise.all(Array.from({ length: 40 }, (_, i) => adminForm(i % 2 ? twin : app, '198.51.100.4')));
    const responses = await Promise.all(forms.map((post) => post(email, 'a wrong password!')));
    const checked = await passwordChecks('admin.sign_in_failed', email);
    expect(checked).toBeLessThanOrEqual(ACCOUNT_ADDRESS.free);
    expect(responses.filter((r) => r.status === 429)).toHaveLength(40 - checked);
    // Whichever instance asks next, the right password waits.
    for (const target of [app, twin]) expect((await (await adminForm(target, '198.51.100.4'))(email, ADMIN_PASSWORD)).status).toBe(429);
  });
});

describe('wrong passwords from elsewhere do not lock the owner out', () => {
  test('admin console: the owner’s known device signs in while another address is locked out and the account is slowed', async () => {
    const email = 'owner-admin@example.com';
    await createAdmin(app, email);
    const owner = new CookieJar();
    const first = await (await adminForm(app, '192.0.2.10', owner))(email, ADMIN_PASSWORD);
    expect(first.status).toBe(303);
    const device = first.headers.getSetCookie().find((c) => c.startsWith('gh_device_'));
    expect(device).toMatch(/; httponly/i);
    expect(device).toMatch(/; samesite=lax/i);
    expect(device).toMatch(/; path=\//i);

    await attack(email, 'admin');
    expect(await passwordChecks('admin.sign_in_failed', email)).toBeLessThanOrEqual(ACCOUNT.free + 2);

    // A new device is only slowed (a short wait, never an hour)…
    const stranger = await (await adminForm(app, '192.0.2.11'))(email, ADMIN_PASSWORD);
    expect(stranger.status).toBe(429);
    expect(Number(stranger.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(Number(stranger.headers.get('retry-after'))).toBeLessThanOrEqual(ACCOUNT.maxSeconds);
    // …and the owner's device, from the attacker's own address even, signs in at once.
    expect((await (await adminForm(app, '203.0.113.1', owner))(email, ADMIN_PASSWORD)).status).toBe(303);
  });

  test('user sign-in: the owner’s known device signs in while wrong passwords arrive from other addresses', async () => {
    const email = 'owner-user@example.com';
    await app.accounts.create(email, USER_PASSWORD);
    const url = () =>
      codeAuthorizationUrl(app.issuer, client, { resource: RESOURCE });
    const seen: string[] = [];
    await authorizeInBrowser(url(), { email, password: USER_PASSWORD, fetch: fromAddress('192.0.2.20', seen) });
    const device = seen.find((c) => c.startsWith('gh_device_'));
    expect(device).toMatch(/; httponly/i);
    expect(device).toMatch(/; samesite=lax/i);

    await attack(email, 'user');
    expect(await passwordChecks('user.sign_in_failed', email)).toBeLessThanOrEqual(ACCOUNT.free + 2);

    // The same browser after its session ended: only the device cookie is left.
    const returning = new CookieJar();
    returning.store({ headers: { getSetCookie: () => [device!] } } as unknown as Response);
    const result = await authorizeInBrowser(url(), { jar: returning, email, password: USER_PASSWORD, fetch: fromAddress('203.0.113.21') });
    expect(result.callback.searchParams.get('code')).toBeTruthy();
  });
});

describe('device cookies', () => {
  const now = 1_800_000_000_000;
  const cookies = createDeviceCookies({ keys: ['current key'], purpose: 'user', now: () => now });

  test('a cookie names its device for its own account only, until it expires', () => {
    const issued = cookies.issue('alice@example.com');
    const device = cookies.verify('alice@example.com', issued.value);
    expect(device).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(issued.name).toBe(cookies.nameFor('alice@example.com'));
    expect(cookies.nameFor('bob@example.com')).not.toBe(issued.name);
    expect(cookies.verify('bob@example.com', issued.value)).toBeUndefined();
    expect(createDeviceCookies({ keys: ['current key'], purpose: 'admin', now: () => now }).verify('alice@example.com', issued.value)).toBeUndefined();
    const later = createDeviceCookies({ keys: ['current key'], purpose: 'user', now: () => now + DEVICE_COOKIE_SECONDS * 1000 });
    expect(later.verify('alice@example.com', issued.value)).toBeUndefined();
    // Renewal keeps the device; a rotated key still verifies until it is gone.
    expect(cookies.verify('alice@example.com', cookies.issue('alice@example.com', device).value)).toBe(device);
    expect(createDeviceCookies({ keys: ['next key', 'current key'], purpose: 'user', now: () => now }).verify('alice@example.com', issued.value)).toBe(device);
    expect(createDeviceCookies({ keys: ['next key'], purpose: 'user', now: () => now }).verify('alice@example.com', issued.value)).toBeUndefined();
  });

  test('a forged or malformed cookie is no device', () => {
    const [id, expires] = cookies.issue('alice@example.com').value.split('.');
    for (const value of [undefined, '', 'x', `${id}.${expires}.${'A'.repeat(43)}`, `${id}.${Number(expires) + 1}.${cookies.issue('alice@example.com', id).value.split('.')[2]}`, 'a'.repeat(300)]) {
      expect(cookies.verify('alice@example.com', value)).toBeUndefined();
    }
  });
});

/**
 * Wrong passwords for `email` from several addresses, past the account-and-address budget of each
 * and past the account-wide one; ends with a parallel burst from new addresses, so the account is
 * being slowed right now.
 */
async function attack(email: string, scope: 'admin' | 'user') {
  const open = (address: string) => (scope === 'admin' ? adminForm(app, address) : userLoginForm(address));
  const seen: number[] = [];
  for (let i = 0; i < 4 * ACCOUNT_ADDRESS.free; i++) seen.push((await (await open(`203.0.113.${1 + (i % 4)}`))(email, 'a wrong password!')).status);
  const burst = await Promise.all(Array.from({ length: 8 }, (_, i) => open(`203.0.113.${10 + i}`)));
  seen.push(...statuses(await Promise.all(burst.map((post) => post(email, 'a wrong password!')))));
  expect(seen).toContain(429);
  expect(seen.filter((s) => s !== 401 && s !== 429)).toEqual([]);
}
