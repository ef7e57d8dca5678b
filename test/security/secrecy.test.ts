/**
 * Secrets never leak (issue 4 §7): a full flow at the most verbose log level, then every token,
 * code, verifier, password, client secret, API token and cookie the test saw is searched for in
 * the logs, the audit rows and the audit stream. None may appear.
 */
import { Writable } from 'node:stream';
import request from 'supertest';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { ADMIN_PASSWORD, createAdmin, signInAdmin } from '../support/admin.ts';
import { seed, startTestApp, TEST_PASSWORD, type TestApp } from '../support/app.ts';
import { authorizationUrl, authorizeForCode, authorizeInBrowser, browse, CookieJar, pkcePair, tokenRequest } from '../support/oauth.ts';

const RESOURCE = 'https://mcp.example.com';
const logs: string[] = [];
const streamed: unknown[] = [];
let app: TestApp;

beforeAll(async () => {
  const destination = new Writable({
    write(chunk, _encoding, done) {
      logs.push(String(chunk));
      done();
    },
  });
  app = await startTestApp({
    env: { GATEHOUSE_LOG_LEVEL: 'trace' },
    logDestination: destination,
    testOnly: { auditSink: { write: (line) => void streamed.push(line), close: async () => {} } },
  });
  await seed(app, { uri: RESOURCE });
  await createAdmin(app);
});
afterAll(() => app?.close());

test('no secret seen in a full flow appears in logs, audit rows or the audit stream', async () => {
  const secrets: string[] = [TEST_PASSWORD, ADMIN_PASSWORD, 'a wrong password, typed by mistake'];

  // A confidential client registers.
  const registered = await request(app.issuer)
    .post('/register')
    .send({ client_name: 'Secretive', redirect_uris: ['http://127.0.0.1:53682/callback'], token_endpoint_auth_method: 'client_secret_post' });
  const client = registered.body;
  secrets.push(client.client_secret);

  // A failed sign-in, then a real one, with cookies.
  await authorizeInBrowser(
    authorizationUrl(app.issuer, { client_id: client.client_id, response_type: 'code', redirect_uri: client.redirect_uris[0], code_challenge: pkcePair().challenge, code_challenge_method: 'S256', resource: RESOURCE }),
    { password: 'a wrong password, typed by mistake' },
  ).catch(() => undefined);
  const jar = new CookieJar();
  const { code, verifier } = await authorizeForCode(app.issuer, client, { resource: RESOURCE, jar });
  secrets.push(code, verifier);
  for (const cookie of jar.header(new URL(app.issuer)).split('; ')) if (cookie.includes('=')) secrets.push(cookie.split('=')[1]!);

  // Code exchange (with the secret in the body and, once, wrongly in Basic), refresh, replay, revocation.
  const auth = { client_id: client.client_id, client_secret: client.client_secret };
  const tokens = await tokenRequest(app.issuer, { grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: client.redirect_uris[0], resource: RESOURCE, ...auth });
  expect(tokens.status).toBe(200);
  secrets.push(tokens.body.access_token, tokens.body.refresh_token);
  const wrongBasic = await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: tokens.body.refresh_token }, {
    authorization: `Basic ${Buffer.from(`${client.client_id}:${client.client_secret}-wrong`).toString('base64')}`,
  });
  expect(wrongBasic.status).toBe(401);
  const refreshed = await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: tokens.body.refresh_token, ...auth });
  secrets.push(refreshed.body.access_token, refreshed.body.refresh_token);
  await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: tokens.body.refresh_token, ...auth }); // replay
  await request(app.issuer).post('/revoke').type('form').send({ token: refreshed.body.refresh_token, ...auth });

  // The admin signs in and makes an API token.
  const admin = await signInAdmin(app);
  for (const cookie of admin.jar.header(new URL(app.adminUrl)).split('; ')) if (cookie.includes('=')) secrets.push(cookie.split('=')[1]!);
  secrets.push(admin.csrf);
  const created = await browse(admin.jar, `${app.adminUrl}/api/v1/tokens`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', origin: app.adminUrl, 'x-csrf-token': admin.csrf },
    body: JSON.stringify({ name: 'secrecy' }),
  });
  const apiToken = ((await created.json()) as { token: string }).token;
  secrets.push(apiToken);
  expect((await fetch(`${app.adminUrl}/api/v1/me`, { headers: { authorization: `Bearer ${apiToken}` } })).status).toBe(200);

  expect(logs.length).toBeGreaterThan(10); // the logs are really there, at trace level
  const auditRows = JSON.stringify(await app.db.selectFrom('audit_events').selectAll().execute());
  const everything = { logs: logs.join(''), auditRows, stream: JSON.stringify(streamed) };
  for (const secret of secrets.filter((s) => typeof s === 'string' && s.length >= 8)) {
    for (const [where, text] of Object.entries(everything)) {
      expect(text.includes(secret), `${where} contains a secret (${secret.slice(0, 6)}…)`).toBe(false);
    }
  }
});
