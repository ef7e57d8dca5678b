/**
 * Failure is closed and clean (issue 4 §8): an unexpected error is a 500 that shows nothing but a
 * request id; the database going away is a 503 with Retry-After, and Gatehouse recovers on its own
 * when the database is back.
 */
import request from 'supertest';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { seed, startTestApp, type TestApp } from '../support/app.ts';
import { testDatabaseKind, whileDatabaseIsAway } from '../support/database.ts';
import { pkcePair, registerClient, tokenRequest } from '../support/oauth.ts';

let app: TestApp;
beforeAll(async () => {
  app = await startTestApp();
  await seed(app);
});
afterAll(() => app?.close());

test.runIf(testDatabaseKind() === 'postgres')('the database going away is a 503 with Retry-After and a request id; it recovers by itself', async () => {
  const client = await registerClient(app.issuer);
  await whileDatabaseIsAway(app.database.url!, async () => {
    const token = await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: 'x'.repeat(43), client_id: client.client_id });
    expect(token.status).toBe(503);
    expect(token.headers.get('retry-after')).toBe('5');
    expect(token.body).toEqual({ error: 'temporarily_unavailable', error_description: expect.any(String), request_id: token.headers.get('x-request-id') });

    const page = await request(app.issuer)
      .get('/authorize')
      .query({ client_id: client.client_id, response_type: 'code', redirect_uri: client.redirect_uris[0], code_challenge: pkcePair().challenge, code_challenge_method: 'S256' });
    expect(page.status).toBe(503);
    expect(page.text).toContain('briefly unavailable');
    expect(page.text).toContain(page.headers['x-request-id']);
    expect(page.text).not.toMatch(/ECONN|stack|at .*\.ts|pg_|sql/i);
  });
  // Back: the pool opens new connections; nobody restarted anything.
  const metadata = await request(app.issuer).get('/.well-known/oauth-authorization-server');
  expect(metadata.status).toBe(200);
  const registered = await request(app.issuer).post('/register').send({ client_name: 'After', redirect_uris: ['http://127.0.0.1/cb'], token_endpoint_auth_method: 'none' });
  expect(registered.status).toBe(201);
});

test('an unexpected error is a 500 with no detail but a request id', async () => {
  // A resource row the code cannot read (scopes must be a JSON array) makes discovery fail unexpectedly.
  await app.db.insertInto('resources').values({ uri: 'https://broken.example.com', name: 'Broken', scopes: JSON.stringify({ not: 'an array' }), default_scopes: '[]', access_token_ttl: 60 }).execute();
  try {
    const response = await request(app.issuer).get('/.well-known/oauth-authorization-server');
    expect(response.status).toBe(500);
    expect(response.body).toEqual({ error: 'server_error', error_description: 'an unexpected error occurred', request_id: response.headers['x-request-id'] });
  } finally {
    await app.db.deleteFrom('resources').where('uri', '=', 'https://broken.example.com').execute();
  }
});
