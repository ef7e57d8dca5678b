/**
 * A client that registers the same metadata again is recognised, not duplicated (issue 4 §3;
 * clients/recognition.ts): one row, one entry in the approval queue, and an administrator's
 * decision that a re-registration cannot shake off. Confidential clients are never recognised.
 */
import { sql } from 'kysely';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seed, startTestApp, type TestApp } from '../support/app.ts';
import { REDIRECT_URI } from '../support/oauth.ts';

const ADMIN = 'admin:admin@example.com';
const RESOURCE = 'https://mcp.example.com';

let app: TestApp;
beforeAll(async () => {
  app = await startTestApp({ env: { GATEHOUSE_CLIENT_APPROVAL: 'manual' } });
  await seed(app);
});
afterAll(() => app?.close());

let n = 0;
/** A registration body no other test in this file sends. */
const unique = (extra: Record<string, unknown> = {}) => ({
  client_name: `Recognised client ${++n}`,
  redirect_uris: [REDIRECT_URI],
  token_endpoint_auth_method: 'none',
  ...extra,
});
const register = (body: Record<string, unknown>, userAgent = 'example-agent/1.0') =>
  request(app.issuer).post('/register').set('user-agent', userAgent).send(body);
const rowsNamed = async (name: string) =>
  app.db.selectFrom('clients').select(['client_id', 'status']).where(sql<string>`metadata->>'client_name'`, '=', name).execute();

describe('the same public client registering again', () => {
  it('gets the same client_id and issue time; one row, one pending entry; audited as client.recognised', async () => {
    const body = unique({ software_id: 'com.example.agent', software_version: '1.2.0', scope: 'files:read' });
    const first = await register(body);
    expect(first.status).toBe(201);
    const again = await register(body, 'another-agent/2.0');
    expect(again.status).toBe(201);
    expect(again.body).toEqual(first.body);
    expect(again.headers['cache-control']).toBe('no-store');
    expect(await rowsNamed(body.client_name)).toEqual([{ client_id: first.body.client_id, status: 'pending' }]);
    expect((await app.clients.list({ status: 'pending' })).filter((c) => c.clientId === first.body.client_id)).toHaveLength(1);

    const events = await app.db.selectFrom('audit_events').select(['event', 'details']).where('client_id', '=', first.body.client_id).orderBy('id').execute();
    expect(events.map((e) => e.event)).toEqual(['client.registered', 'client.recognised']);
    expect(events[1]!.details).toMatchObject({ client_name: body.client_name, status: 'pending' });
  });

  it('a rejected client stays rejected: registering again does not make a fresh pending one', async () => {
    const body = unique();
    const first = await register(body);
    await app.clients.reject(first.body.client_id, ADMIN, 'not allowed here');
    const again = await register(body);
    expect(again.status).toBe(201);
    expect(again.body.client_id).toBe(first.body.client_id);
    expect(await rowsNamed(body.client_name)).toEqual([{ client_id: first.body.client_id, status: 'rejected' }]);
  });

  it('an approved client keeps its approval and ceiling', async () => {
    const body = unique();
    const first = await register(body);
    await app.clients.approve(first.body.client_id, [{ resource: RESOURCE, scopes: ['files:read'] }], ADMIN);
    const again = await register(body);
    expect(again.body.client_id).toBe(first.body.client_id);
    const client = await app.clients.get(first.body.client_id);
    expect(client).toMatchObject({ status: 'approved' });
    expect(client!.ceiling).toEqual({ [RESOURCE]: ['files:read'] });
  });

  it.each<[string, Record<string, unknown>]>([
    ['another name', { client_name: 'Something else entirely' }],
    ['another redirect URI', { redirect_uris: ['http://127.0.0.1:8976/other'] }],
    ['an extra redirect URI', { redirect_uris: [REDIRECT_URI, 'http://127.0.0.1/second'] }],
    ['another software_version', { software_version: '9.9.9' }],
    ['a logo', { logo_uri: 'https://example.com/logo.png' }],
  ])('metadata that differs by %s is a new client', async (_what, change) => {
    const body = unique({ software_version: '1.0.0' });
    const first = await register(body);
    const other = await register({ ...body, ...change });
    expect(other.status).toBe(201);
    expect(other.body.client_id).not.toBe(first.body.client_id);
  });

  it('a confidential client is never recognised: each registration has its own id and secret', async () => {
    const body = unique({ token_endpoint_auth_method: 'client_secret_basic' });
    const first = await register(body);
    const again = await register(body);
    expect(first.status).toBe(201);
    expect(again.status).toBe(201);
    expect(again.body.client_id).not.toBe(first.body.client_id);
    expect(again.body.client_secret).not.toBe(first.body.client_secret);
    expect(await rowsNamed(body.client_name)).toHaveLength(2);
  });

  it('a deleted (expired) client is not resurrected: the next registration is a new client', async () => {
    const body = unique();
    const first = await register(body);
    await app.db.updateTable('clients').set({ created_at: sql<Date>`now() - interval '40 days'` }).where('client_id', '=', first.body.client_id).execute();
    expect(await app.clients.expireStalePending(30 * 86400)).toContain(first.body.client_id);
    const again = await register(body);
    expect(again.status).toBe(201);
    expect(again.body.client_id).not.toBe(first.body.client_id);
    expect(await rowsNamed(body.client_name)).toEqual([{ client_id: again.body.client_id, status: 'pending' }]);
  });
});
