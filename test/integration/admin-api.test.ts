/**
 * The admin JSON API (/api/v1 on the admin listener): the console's operations for automation,
 * authenticated by a personal API token (stored hashed) or by the console session plus
 * X-CSRF-Token, and described by an OpenAPI document.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { OPENAPI_DOCUMENT } from '../../src/admin/openapi.ts';
import { createAdmin, signInAdmin, type AdminBrowser } from '../support/admin.ts';
import { seed, startTestApp, TEST_PASSWORD, type TestApp } from '../support/app.ts';
import { browse, registerClient } from '../support/oauth.ts';

const RESOURCE = 'https://mcp.example.com';
let app: TestApp;
let admin: AdminBrowser;
let token: string;

beforeAll(async () => {
  app = await startTestApp({ env: { GATEHOUSE_CLIENT_APPROVAL: 'manual' } });
  await seed(app, { uri: RESOURCE });
  await createAdmin(app);
  admin = await signInAdmin(app);
});
afterAll(() => app?.close());

function api(path: string, init: { method?: string; body?: unknown; token?: string | undefined; headers?: Record<string, string> } = {}) {
  const headers: Record<string, string> = { accept: 'application/json', ...init.headers };
  if (init.token !== undefined) headers.authorization = `Bearer ${init.token}`;
  if (init.body !== undefined) headers['content-type'] = 'application/json';
  return fetch(`${app.adminUrl}/api/v1${path}`, { method: init.method ?? 'GET', headers, body: init.body === undefined ? undefined : JSON.stringify(init.body) });
}

/** A request from the signed-in console session (cookie), optionally with its CSRF header. */
function sessionApi(path: string, init: { method?: string; body?: unknown; csrf?: boolean } = {}) {
  const headers: Record<string, string> = { accept: 'application/json', origin: app.adminUrl };
  if (init.csrf) headers['x-csrf-token'] = admin.csrf;
  if (init.body !== undefined) headers['content-type'] = 'application/json';
  return browse(admin.jar, `${app.adminUrl}/api/v1${path}`, { method: init.method ?? 'GET', headers, body: init.body === undefined ? undefined : JSON.stringify(init.body) });
}

describe('authentication', () => {
  test('a session creates a personal API token (shown once, stored only as a digest)', async () => {
    const refused = await sessionApi('/tokens', { method: 'POST', body: { name: 'ci' } });
    expect(refused.status).toBe(403); // the session needs its CSRF token for state changes
    const created = await sessionApi('/tokens', { method: 'POST', body: { name: 'ci' }, csrf: true });
    expect(created.status).toBe(201);
    const body = (await created.json()) as { token: string; id: string; name: string };
    expect(body.token).toMatch(/^gh_pat_[A-Za-z0-9_-]{43}$/);
    token = body.token;
    const row = await app.db.selectFrom('admin_api_tokens').selectAll().where('id', '=', body.id).executeTakeFirstOrThrow();
    expect(row.token_digest).toBe(createHash('sha256').update(token).digest('base64url'));
    expect(JSON.stringify(row)).not.toContain(token);
    const listed = (await (await sessionApi('/tokens')).json()) as { tokens: Array<Record<string, unknown>> };
    expect(JSON.stringify(listed)).not.toContain(token);
  });

  test('anonymous callers, unknown tokens and non-admins get 401 JSON on every operation', async () => {
    const paths: Array<[string, string]> = [
      ['GET', '/me'], ['GET', '/clients'], ['GET', '/clients/x'], ['POST', '/clients/x/approve'], ['POST', '/clients/x/reject'],
      ['POST', '/clients/x/suspend'], ['GET', '/resources'], ['POST', '/resources'], ['DELETE', '/resources?uri=x'], ['GET', '/audit'],
      ['GET', '/tokens'], ['POST', '/tokens'], ['DELETE', '/tokens/x'],
    ];
    for (const [method, path] of paths) {
      for (const bearer of [undefined, 'gh_pat_unknown', 'not-a-token']) {
        const response = await api(path, { method, token: bearer, body: method === 'POST' ? {} : undefined });
        expect(response.status, `${method} ${path} ${bearer}`).toBe(401);
        expect(response.headers.get('www-authenticate')).toMatch(/^Bearer realm="gatehouse-admin"/);
        expect(((await response.json()) as { error: string }).error).toMatch(/unauthorized|invalid_token/);
      }
    }
  });

  test('a token acts as its admin; a revoked one stops working; a password never opens the API', async () => {
    const me = await api('/me', { token });
    expect(await me.json()).toEqual({ email: 'admin@example.com', via: 'token', token_name: 'ci' });
    const second = (await (await api('/tokens', { method: 'POST', body: { name: 'temp' }, token })).json()) as { id: string; token: string };
    expect((await api('/tokens/' + second.id, { method: 'DELETE', token })).status).toBe(204);
    expect((await api('/me', { token: second.token })).status).toBe(401);
    // A user's password never opens the API.
    expect((await api('/me', { headers: { authorization: `Basic ${Buffer.from(`alice@example.com:${TEST_PASSWORD}`).toString('base64')}` } })).status).toBe(401);
  });

  test('a cross-origin request is refused even with a session and its CSRF token', async () => {
    const response = await browse(admin.jar, `${app.adminUrl}/api/v1/tokens`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin: 'https://evil.example.com', 'x-csrf-token': admin.csrf },
      body: JSON.stringify({ name: 'evil' }),
    });
    expect(response.status).toBe(403);
  });
});

describe('operations', () => {
  test('clients: list pending, approve with a ceiling, suspend, reject — each leaves an audit event', async () => {
    const client = await registerClient(app.issuer, { client_name: 'API Client' });
    const pending = (await (await api('/clients?status=pending', { token })).json()) as { clients: Array<{ clientId: string }> };
    expect(pending.clients.map((c) => c.clientId)).toContain(client.client_id);
    const path = `/clients/${encodeURIComponent(client.client_id)}`;

    const bad = await api(`${path}/approve`, { method: 'POST', token, body: { ceiling: [{ resource: RESOURCE, scopes: ['files:delete'] }] } });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toEqual({ error: 'invalid_request', error_description: expect.stringContaining('does not offer files:delete') });
    const malformed = await api(`${path}/approve`, { method: 'POST', token, body: { ceiling: 'everything' } });
    expect(malformed.status).toBe(400);

    const approved = await api(`${path}/approve`, { method: 'POST', token, body: { ceiling: [{ resource: RESOURCE, scopes: ['files:read'] }] } });
    expect(approved.status).toBe(200);
    expect(await approved.json()).toMatchObject({ status: 'approved', ceiling: { [RESOURCE]: ['files:read'] }, statusChangedBy: 'admin:admin@example.com (API token ci)' });
    const detail = (await (await api(path, { token })).json()) as { usage: { activeGrants: number } };
    expect(detail.usage.activeGrants).toBe(0);

    expect((await api(`${path}/suspend`, { method: 'POST', token, body: { reason: 'api test' } })).status).toBe(200);
    expect((await api(`${path}/reject`, { method: 'POST', token, body: {} })).status).toBe(200);
    const events = (await (await api(`/audit?client_id=${encodeURIComponent(client.client_id)}`, { token })).json()) as { events: Array<{ event: string; actor: string }> };
    expect(events.events.map((e) => e.event)).toEqual(['client.rejected', 'client.suspended', 'client.approved', 'client.registered']);
    expect(events.events[2]!.actor).toBe('admin:admin@example.com (API token ci)');

    expect((await api('/clients/no-such-client', { token })).status).toBe(404);
    expect((await api('/clients?status=sleeping', { token })).status).toBe(400);
  });

  test('resources: add, list, remove; bad input is a 400 that changes nothing', async () => {
    const body = { uri: 'https://Tools.example.com/mcp', name: 'Tools', scopes: [{ name: 'run', description: 'Run tools' }], accessTokenTtl: 300 };
    const created = await api('/resources', { method: 'POST', token, body });
    expect(created.status).toBe(201);
    expect(await created.json()).toMatchObject({ uri: 'https://tools.example.com/mcp', accessTokenTtl: 300 });
    expect((await api('/resources', { method: 'POST', token, body })).status).toBe(400); // already registered
    expect((await api('/resources', { method: 'POST', token, body: { uri: 'javascript:alert(1)', name: 'x', scopes: [] } })).status).toBe(400);
    const wrongType = await fetch(`${app.adminUrl}/api/v1/resources`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'text/plain' }, body: 'x' });
    expect(wrongType.status).toBe(415);
    const list = (await (await api('/resources', { token })).json()) as { resources: Array<{ uri: string }> };
    expect(list.resources.map((r) => r.uri).sort()).toEqual([RESOURCE, 'https://tools.example.com/mcp']);
    expect((await api('/resources?uri=https://tools.example.com/mcp', { method: 'DELETE', token })).status).toBe(204);
    expect((await api('/resources?uri=https://tools.example.com/mcp', { method: 'DELETE', token })).status).toBe(404);
  });

  test('audit: newest first, filtered, paged', async () => {
    const first = (await (await api('/audit?limit=2', { token })).json()) as { events: Array<{ id: string }> };
    expect(first.events).toHaveLength(2);
    const next = (await (await api(`/audit?limit=2&before=${first.events[1]!.id}`, { token })).json()) as { events: Array<{ id: string }> };
    expect(Number(next.events[0]!.id)).toBeLessThan(Number(first.events[1]!.id));
    expect((await api('/audit?limit=0', { token })).status).toBe(400);
  });
});

describe('the OpenAPI document', () => {
  test('is served without authentication and describes every operation the API serves', async () => {
    const response = await fetch(`${app.adminUrl}/api/v1/openapi.json`);
    expect(response.status).toBe(200);
    const document = (await response.json()) as typeof OPENAPI_DOCUMENT;
    expect(document.openapi).toBe('3.1.0');
    const described = Object.entries(document.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`)).sort();
    expect(described).toEqual(
      [
        'GET /me', 'GET /clients', 'GET /clients/{id}', 'POST /clients/{id}/approve', 'POST /clients/{id}/reject', 'POST /clients/{id}/suspend',
        'GET /resources', 'POST /resources', 'DELETE /resources', 'GET /audit', 'GET /tokens', 'POST /tokens', 'DELETE /tokens/{id}',
      ].sort(),
    );
    // …and each described operation exists: an authenticated call never answers 404 Not Found for the route itself.
    for (const op of described) {
      const [method, path] = op.split(' ') as [string, string];
      const concrete = path.replace('{id}', 'nonexistent');
      const r = await api(concrete, { method, token, body: method === 'GET' || method === 'DELETE' ? undefined : {} });
      expect(r.status, op).not.toBe(405);
      if (r.status === 404) expect(((await r.json()) as { error: string }).error, op).toBe('not_found');
    }
  });
});
