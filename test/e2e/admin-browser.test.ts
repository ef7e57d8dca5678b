/**
 * The admin's approval path in a real browser (Debian's Chromium at /usr/bin/chromium, driven by
 * playwright-core; .ci/run installs it). With manual client approval, the official MCP SDK client
 * discovers Gatehouse and registers by DCR; its user is told the client waits for approval; the
 * admin signs in to the console, finds the client in the Pending queue and approves it for
 * files:read only; the user tries again, signs in and consents; the browser lands on the client's
 * loopback redirect URI, and the SDK exchanges the code for a files:read token for its MCP server.
 *
 * Screenshots of each page go to test-results/screenshots/.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { auth } from '@modelcontextprotocol/sdk/client/auth.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { decodeJwt } from 'jose';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestApp, TEST_PASSWORD, type TestApp } from '../support/app.ts';
import { ADMIN_EMAIL, ADMIN_PASSWORD, createAdmin } from '../support/admin.ts';
import { InMemoryOAuthProvider } from '../support/mcp-client.ts';
import { startMcpServer, WHOAMI_TOOL, type TestMcpServer, type WhoAmI } from '../support/mcp-server.ts';

const CHROMIUM = '/usr/bin/chromium';
const SCREENSHOTS = fileURLToPath(new URL('../../test-results/screenshots/', import.meta.url));
const USER_EMAIL = 'browser-user@example.com';
const CLIENT_NAME = 'Gatehouse e2e (browser)';
const SCOPES = ['files:read', 'files:write'];

/** A loopback "native app" that receives the authorization response, as an MCP client does. */
interface LoopbackReceiver {
  redirectUri: string;
  /** Resolves with the first callback URL the browser brings. */
  callback: Promise<URL>;
  close(): Promise<void>;
}

async function startLoopbackReceiver(): Promise<LoopbackReceiver> {
  let deliver!: (url: URL) => void;
  const callback = new Promise<URL>((resolve) => (deliver = resolve));
  let redirectUri = '';
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', redirectUri);
    if (url.pathname !== '/callback') {
      res.writeHead(404).end();
      return;
    }
    deliver(url);
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><title>Signed in</title><p>You can close this window.</p>');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  redirectUri = `http://127.0.0.1:${(server.address() as AddressInfo).port}/callback`;
  return {
    redirectUri,
    callback,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** An OAuthClientProvider whose "redirect to authorization" only records the URL: the test opens it in Chromium. */
class BrowserProvider extends InMemoryOAuthProvider {
  constructor(redirectUri: string) {
    super(redirectUri, CLIENT_NAME);
  }

  redirectToAuthorization(authorizationUrl: URL): void {
    this.authorizationUrls.push(authorizationUrl);
  }
}

/** Where the page is and what it says: the message of a failed wait, so CI's log tells what the browser saw. */
async function whatIsShown(page: Page): Promise<string> {
  const text = await page.locator('body').innerText({ timeout: 1_000 }).catch(() => '(no body)');
  return `the page is at ${page.url()} and shows:\n${text.slice(0, 1_500)}`;
}

/** Waits for the page to reach `url` (a string or predicate); on timeout, fails saying what is shown instead. */
async function arriveAt(page: Page, url: string | ((url: URL) => boolean)): Promise<void> {
  try {
    await page.waitForURL(url);
  } catch (err) {
    throw new Error(`expected to arrive at ${typeof url === 'string' ? url : 'the expected URL'}, but ${await whatIsShown(page)}`, { cause: err });
  }
}

/** Waits for `selector` to be visible; on timeout, fails saying what is shown instead. */
async function see(page: Page, selector: string): Promise<void> {
  try {
    await page.waitForSelector(selector);
  } catch (err) {
    throw new Error(`expected to see ${selector}, but ${await whatIsShown(page)}`, { cause: err });
  }
}

async function screenshot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: `${SCREENSHOTS}${name}`, fullPage: true });
}

let app: TestApp;
let mcp: TestMcpServer;
let receiver: LoopbackReceiver;
let browser: Browser | undefined;
let userContext: BrowserContext;
let adminContext: BrowserContext;
let userPage: Page;
let adminPage: Page;
let provider: BrowserProvider;
let accountId: string;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `${CHROMIUM} is missing: the browser tests drive Debian's Chromium. Install it with \`apt-get install -y chromium\` (.ci/run does).`,
    );
  }
  mkdirSync(SCREENSHOTS, { recursive: true });

  app = await startTestApp({ env: { GATEHOUSE_CLIENT_APPROVAL: 'manual' } });
  mcp = await startMcpServer({ issuer: app.issuer, scopes: SCOPES });
  await app.resources.add({
    uri: mcp.url,
    name: 'Test MCP server',
    scopes: [
      { name: 'files:read', description: 'Read your files' },
      { name: 'files:write', description: 'Change your files' },
    ],
    defaultScopes: ['files:read'],
    accessTokenTtl: 600,
  });
  accountId = (await app.accounts.create(USER_EMAIL, TEST_PASSWORD)).id;
  await createAdmin(app);
  receiver = await startLoopbackReceiver();
  provider = new BrowserProvider(receiver.redirectUri);

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  userContext = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  adminContext = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  // Fail with Playwright's own message (what it waited for) well before vitest's test timeout.
  userContext.setDefaultTimeout(8_000);
  adminContext.setDefaultTimeout(8_000);
  userPage = await userContext.newPage();
  adminPage = await adminContext.newPage();
});

afterAll(async () => {
  await browser?.close();
  await receiver?.close();
  await mcp?.close();
  await app?.close();
});

describe('an admin approves an MCP client in the browser', () => {
  test('the SDK registers by DCR; the user is told the client waits for approval', async () => {
    expect(await auth(provider, { serverUrl: mcp.url })).toBe('REDIRECT');
    const clientId = provider.client?.client_id;
    expect(clientId).toBeTruthy();
    expect((await app.clients.get(clientId!))?.status).toBe('pending');

    const url = provider.authorizationUrls[0]!;
    expect(`${url.origin}${url.pathname}`).toBe(`${app.issuer}/authorize`);
    expect(url.searchParams.get('resource')).toBe(mcp.url);
    expect(url.searchParams.get('scope')).toBe(SCOPES.join(' '));

    await userPage.goto(url.href);
    await see(userPage, 'button[value="retry"]');
    expect(await userPage.locator('h1').innerText()).toBe('Waiting for approval');
    const lead = await userPage.locator('p.lead').innerText();
    expect(lead).toBe(`${CLIENT_NAME} is waiting for approval by your administrator.`);
    expect(await userPage.locator('input[name="password"]').count()).toBe(0); // no sign-in before approval
    await screenshot(userPage, 'waiting-for-approval.png');
  });

  test('the admin signs in, finds the client pending, and approves files:read only', async () => {
    const clientId = provider.client!.client_id;
    await adminPage.goto(`${app.adminUrl}/sign-in`);
    await adminPage.getByLabel('Email').fill(ADMIN_EMAIL);
    await adminPage.getByLabel('Password').fill(ADMIN_PASSWORD);
    await adminPage.getByRole('button', { name: 'Sign in' }).click();
    await arriveAt(adminPage, `${app.adminUrl}/pending`);
    expect(await adminPage.locator('h1').innerText()).toBe('Pending approval');
    const link = adminPage.getByRole('link', { name: CLIENT_NAME });
    expect(await link.count()).toBe(1);
    expect(await adminPage.locator('table').innerText()).toContain(clientId);
    await screenshot(adminPage, 'pending-queue.png');

    await link.click();
    await arriveAt(adminPage, `${app.adminUrl}/clients/${encodeURIComponent(clientId)}`);
    expect(await adminPage.locator('h1').innerText()).toContain(CLIENT_NAME);
    const read = adminPage.locator(`input[type="checkbox"][value="${mcp.url} files:read"]`);
    const write = adminPage.locator(`input[type="checkbox"][value="${mcp.url} files:write"]`);
    expect(await read.count()).toBe(1);
    expect(await write.count()).toBe(1);
    await screenshot(adminPage, 'client-detail.png');

    await read.check();
    await write.uncheck();
    await adminPage.getByRole('button', { name: 'Approve', exact: true }).click();
    await arriveAt(adminPage, `${app.adminUrl}/clients/${encodeURIComponent(clientId)}`);
    expect(await adminPage.locator('h1 .status').innerText()).toBe('approved');
    expect(await adminPage.locator(`input[type="checkbox"][value="${mcp.url} files:read"]`).isChecked()).toBe(true);
    expect(await adminPage.locator(`input[type="checkbox"][value="${mcp.url} files:write"]`).isChecked()).toBe(false);

    const record = await app.clients.get(clientId);
    expect(record?.status).toBe('approved');
    expect(record?.ceiling).toEqual({ [mcp.url]: ['files:read'] });
  });

  test('the user tries again, signs in and consents; the SDK gets a files:read token for the MCP server', async () => {
    await userPage.getByRole('button', { name: 'Try again' }).click();
    await see(userPage, 'input[name="password"]');
    expect(await userPage.locator('h1').innerText()).toBe('Sign in');
    await userPage.getByLabel('Email').fill(USER_EMAIL);
    await userPage.getByLabel('Password').fill(TEST_PASSWORD);
    await userPage.getByRole('button', { name: 'Sign in' }).click();

    await see(userPage, 'button[value="allow"]');
    expect(await userPage.locator('h1').innerText()).toBe('Allow access?');
    const scopesShown = await userPage.locator('.scopes code.scope-name').allInnerTexts();
    expect(scopesShown).toEqual(['files:read']); // the ceiling caps what the user is asked for
    await screenshot(userPage, 'consent.png');

    await userPage.getByRole('button', { name: 'Allow' }).click();
    const callback = await receiver.callback;
    await arriveAt(userPage, (url) => url.href.startsWith(receiver.redirectUri));
    expect(await userPage.locator('body').innerText()).toContain('You can close this window.');
    expect(`${callback.origin}${callback.pathname}`).toBe(receiver.redirectUri);
    expect(callback.searchParams.get('error')).toBeNull();
    expect(callback.searchParams.get('iss')).toBe(app.issuer);
    expect(callback.searchParams.get('state')).toBe(provider.lastState);
    const code = callback.searchParams.get('code');
    expect(code).toBeTruthy();

    expect(await auth(provider, { serverUrl: mcp.url, authorizationCode: code! })).toBe('AUTHORIZED');
    const claims = decodeJwt(provider.storedTokens!.access_token);
    expect(claims.scope).toBe('files:read');
    expect(claims.aud).toBe(mcp.url);
    expect(claims.sub).toBe(accountId);
    expect(claims.client_id).toBe(provider.client!.client_id);
  });

  test('the SDK client calls the MCP server with that token', async () => {
    expect(provider.storedTokens, 'needs the tokens from the previous test').toBeDefined();
    const client = new Client({ name: 'gatehouse-e2e-browser', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(mcp.url), { authProvider: provider }));
    try {
      const result = await client.callTool({ name: WHOAMI_TOOL, arguments: {} });
      expect(result.isError).toBeFalsy();
      const content = result.content as Array<{ type: string; text?: string }>;
      const who = JSON.parse(content[0]!.text!) as WhoAmI;
      expect(who).toEqual({ sub: accountId, client_id: provider.client!.client_id, scopes: ['files:read'], aud: mcp.url });
    } finally {
      await client.close();
    }
  });
});
