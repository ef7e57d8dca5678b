/**
 * The per-client limit on the token endpoint (issue 4 §3): counted across instances, refused
 * attempts included, other clients untouched, and the request body read without disturbing
 * oidc-provider's own parsing.
 */
import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientIdOfTokenRequest } from '../../src/oidc/token-rate-limit.ts';
import { seed, startTestApp, type TestApp } from '../support/app.ts';
import { obtainTokens, registerClient, tokenRequest } from '../support/oauth.ts';

const LIMIT = 4;

describe('token requests per client', () => {
  let app: TestApp;
  let twin: TestApp;

  beforeAll(async () => {
    app = await startTestApp({ env: { GATEHOUSE_TOKEN_REQUESTS_PER_MINUTE: String(LIMIT) } });
    // A second instance on the same database: the limit is one budget, not one per instance.
    twin = await startTestApp({ env: { GATEHOUSE_TOKEN_REQUESTS_PER_MINUTE: String(LIMIT) }, database: app.database });
    await seed(app);
  });
  afterAll(async () => {
    await twin?.close();
    await app?.close();
  });

  const badRefresh = (issuer: string, clientId: string) =>
    tokenRequest(issuer, { grant_type: 'refresh_token', refresh_token: 'not-a-real-token', client_id: clientId });

  it('refused attempts count; past the limit, 429 with Retry-After on every instance; other clients are untouched', async () => {
    const noisy = await registerClient(app.issuer);
    const quiet = await registerClient(app.issuer);
    for (let i = 0; i < LIMIT; i++) {
      const response = await badRefresh(i % 2 ? twin.issuer : app.issuer, noisy.client_id);
      expect(response.status).toBe(400);
      expect(response.body.error).toBe('invalid_grant');
    }
    for (const issuer of [app.issuer, twin.issuer]) {
      const limited = await badRefresh(issuer, noisy.client_id);
      expect(limited.status).toBe(429);
      expect(limited.body).toEqual({ error: 'invalid_request', error_description: expect.stringMatching(/^too many token requests for this client: try again in \d+ seconds$/) });
      const retryAfter = Number(limited.headers.get('retry-after'));
      expect(retryAfter).toBeGreaterThan(0);
      expect(retryAfter).toBeLessThanOrEqual(60);
      expect(limited.headers.get('cache-control')).toBe('no-store');
    }
    expect((await badRefresh(app.issuer, quiet.client_id)).status).toBe(400);
  });

  it('a limited request changes nothing but its counter', async () => {
    const { client, tokens } = await obtainTokens(app.issuer);
    // Use up the budget with refused attempts (the code exchange above was one).
    for (let i = 1; i < LIMIT; i++) await badRefresh(app.issuer, client.client_id);
    const before = await app.database.db.selectFrom('oidc_payloads').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow();
    const limited = await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: tokens.body.refresh_token, client_id: client.client_id });
    expect(limited.status).toBe(429);
    const after = await app.database.db.selectFrom('oidc_payloads').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow();
    expect(after.n).toBe(before.n);
    // The refresh token was not consumed: the client can use it once the window has passed.
    const stored = await app.database.db.selectFrom('oidc_payloads').select('consumed_at').where('model', '=', 'RefreshToken').where('grant_id', '=', (await app.database.db.selectFrom('oidc_payloads').select('grant_id').where('model', '=', 'RefreshToken').orderBy('created_at', 'desc').executeTakeFirstOrThrow()).grant_id).execute();
    expect(stored.every((row) => row.consumed_at === null)).toBe(true);
  });

  it('a confidential client is counted by its Basic credentials, whatever the body says', async () => {
    const client = await registerClient(app.issuer, { token_endpoint_auth_method: 'client_secret_basic' });
    const basic = `Basic ${Buffer.from(`${encodeURIComponent(client.client_id)}:${encodeURIComponent('wrong')}`).toString('base64')}`;
    for (let i = 0; i < LIMIT; i++) {
      const response = await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: 'x', client_id: `decoy-${i}` }, { authorization: basic });
      expect(response.status).not.toBe(429);
    }
    const limited = await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: 'x' }, { authorization: basic });
    expect(limited.status).toBe(429);
  });

  it('a body that arrives slowly, in pieces, is still read whole by oidc-provider', async () => {
    const client = await registerClient(app.issuer);
    const body = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: 'not-a-real-token', client_id: client.client_id }).toString();
    const url = new URL(`${app.issuer}/token`);
    const response = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest(
        { host: '127.0.0.1', port: url.port, path: '/token', method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) } },
        (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
        },
      );
      req.on('error', reject);
      req.write(body.slice(0, 10));
      setTimeout(() => req.write(body.slice(10, 40)), 30);
      setTimeout(() => req.end(body.slice(40)), 60);
    });
    expect(response.status).toBe(400);
    // invalid_grant proves oidc-provider parsed every parameter, the last piece included.
    expect(JSON.parse(response.body)).toMatchObject({ error: 'invalid_grant' });
  });

  it('names the client the way the token endpoint will (RFC 6749 §2.3, RFC 7523 §3)', () => {
    const basic = (id: string, secret = 's') => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${secret}`).toString('base64')}`;
    expect(clientIdOfTokenRequest(basic('https://app.example/client.json'), undefined)).toBe('https://app.example/client.json');
    expect(clientIdOfTokenRequest(basic('abc'), new URLSearchParams({ client_id: 'other' }))).toBe('abc');
    expect(clientIdOfTokenRequest(undefined, new URLSearchParams({ client_id: 'abc' }))).toBe('abc');
    const assertion = `${Buffer.from('{"alg":"ES256"}').toString('base64url')}.${Buffer.from('{"sub":"jwt-client","iss":"jwt-client"}').toString('base64url')}.sig`;
    expect(clientIdOfTokenRequest(undefined, new URLSearchParams({ client_assertion: assertion }))).toBe('jwt-client');
    expect(clientIdOfTokenRequest(undefined, new URLSearchParams({ client_assertion: 'garbage' }))).toBeUndefined();
    expect(clientIdOfTokenRequest('Bearer x', undefined)).toBeUndefined();
  });
});
