/**
 * Abuse controls on dynamic registration (issue 4 §3): per-address rate limit across instances,
 * a cap on clients waiting for approval, size limits, and never-approved clients expiring.
 * Every refusal stores nothing.
 */
import { sql } from 'kysely';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { MAX_REGISTRATION_BODY } from '../../src/clients/registration-guard.ts';
import { startTestApp, type TestApp } from '../support/app.ts';
import { REDIRECT_URI } from '../support/oauth.ts';

let app: TestApp;
beforeAll(async () => {
  app = await startTestApp({ env: { GATEHOUSE_CLIENT_APPROVAL: 'manual', GATEHOUSE_REGISTRATIONS_PER_HOUR: '100000' } });
});
afterAll(() => app?.close());

let n = 0;
// Numbered: identical metadata would be recognised as one client (clients/recognition.ts).
const body = (extra: Record<string, unknown> = {}) => ({ client_name: `Limited ${++n}`, redirect_uris: [REDIRECT_URI], token_endpoint_auth_method: 'none', ...extra });
const countClients = async () => Number((await app.db.selectFrom('clients').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()).n);

describe('field limits', () => {
  test.each<[string, Record<string, unknown>, string, RegExp]>([
    ['more than 10 redirect URIs', { redirect_uris: Array.from({ length: 11 }, (_, i) => `http://127.0.0.1/cb${i}`) }, 'invalid_redirect_uri', /at most 10/],
    ['a 201-character client_name', { client_name: 'x'.repeat(201) }, 'invalid_client_metadata', /client_name must be at most 200/],
    ['a client_name with a newline (header injection)', { client_name: 'Evil\r\nSet-Cookie: x=y' }, 'invalid_client_metadata', /control characters/],
    ['a 2001-character logo_uri', { logo_uri: `https://example.com/${'a'.repeat(1990)}` }, 'invalid_client_metadata', /logo_uri is longer than 2000/],
    ['a 2001-character redirect URI', { redirect_uris: [`http://127.0.0.1/${'a'.repeat(1990)}`] }, 'invalid_redirect_uri', /longer than 2000/],
  ])('%s is refused, and nothing is stored', async (_what, extra, error, description) => {
    const before = await countClients();
    const response = await request(app.issuer).post('/register').send(body(extra));
    expect(response.status).toBe(400);
    expect(response.body.error).toBe(error);
    expect(response.body.error_description).toMatch(description);
    expect(await countClients()).toBe(before);
  });

  test('a body larger than 16 KiB is refused before it is parsed', async () => {
    const before = await countClients();
    const response = await request(app.issuer).post('/register').set('content-type', 'application/json').send(JSON.stringify(body({ padding: 'x'.repeat(MAX_REGISTRATION_BODY) })));
    expect(response.status).toBe(413);
    expect(response.body.error).toBe('invalid_request');
    expect(await countClients()).toBe(before);
  });
});

test('registrations per address are limited across instances, with Retry-After', async () => {
  const limited = await startTestApp({ env: { GATEHOUSE_REGISTRATIONS_PER_HOUR: '3' } });
  const second = await startTestApp({ database: limited.database, env: { GATEHOUSE_REGISTRATIONS_PER_HOUR: '3' } });
  try {
    expect((await request(limited.issuer).post('/register').send(body())).status).toBe(201);
    expect((await request(second.issuer).post('/register').send(body())).status).toBe(201);
    expect((await request(limited.issuer).post('/register').send(body())).status).toBe(201);
    const refused = await request(second.issuer).post('/register').send(body());
    expect(refused.status).toBe(429);
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
    expect(refused.body).toEqual({ error: 'invalid_request', error_description: expect.stringMatching(/too many registrations from this address/) });
    const stored = await limited.db.selectFrom('clients').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow();
    expect(Number(stored.n)).toBe(3);
  } finally {
    await second.close();
    await limited.close();
  }
});

test('when too many clients wait for approval, registration pauses with 503 until an administrator decides', async () => {
  const capped = await startTestApp({ env: { GATEHOUSE_CLIENT_APPROVAL: 'manual', GATEHOUSE_MAX_PENDING_CLIENTS: '2' } });
  try {
    const first = await request(capped.issuer).post('/register').send(body());
    await request(capped.issuer).post('/register').send(body());
    const paused = await request(capped.issuer).post('/register').send(body());
    expect(paused.status).toBe(503);
    expect(paused.headers['retry-after']).toBe('3600');
    expect(paused.body.error).toBe('temporarily_unavailable');
    await capped.clients.reject(first.body.client_id, 'admin@example.com');
    expect((await request(capped.issuer).post('/register').send(body())).status).toBe(201);
  } finally {
    await capped.close();
  }
});

test('never-approved clients expire after the pending TTL; decided ones stay', async () => {
  const old = (await request(app.issuer).post('/register').send(body({ client_name: 'Stale' }))).body.client_id as string;
  const decided = (await request(app.issuer).post('/register').send(body({ client_name: 'Returned' }))).body.client_id as string;
  const fresh = (await request(app.issuer).post('/register').send(body({ client_name: 'Fresh' }))).body.client_id as string;
  await app.db.updateTable('clients').set({ created_at: sql<Date>`now() - interval '31 days'` }).where('client_id', 'in', [old, decided]).execute();
  // A client sent back to pending (e.g. its document changed) carries a decision, so it stays.
  await app.db.updateTable('clients').set({ status_changed_at: sql<Date>`now()` }).where('client_id', '=', decided).execute();
  const expired = await app.clients.expireStalePending(30 * 86400);
  expect(expired).toEqual([old]);
  expect(await app.clients.get(old)).toBeUndefined();
  expect(await app.clients.get(decided)).toBeDefined();
  expect(await app.clients.get(fresh)).toBeDefined();
  expect((await app.audit.list({ event: 'client.expired' }))[0]).toMatchObject({ clientId: old, actor: 'gatehouse' });
});
