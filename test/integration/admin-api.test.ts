/**
 * The admin JSON API (/api/v1 on the admin listener): the console's operations for automation,
 * authenticated by a personal API token (stored hashed) or by the console session plus
 * X-CSRF-Token, and described by an OpenAPI document.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createApiTokens } from '../../src/admin/api-tokens.ts';
import { OPENAPI_DOCUMENT } from '../../src/admin/openapi.ts';
import { createAdmin, signInAdmin, type AdminBrowser } from '../support/admin.ts';
import { seed, startTestApp, TEST_PASSWORD, type TestApp } from '../support/app.ts';
import { browse, obtainTokens, registerClient, tokenRequest } from '../support/oauth.ts';

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

/** Everything the API can change, and how many audit events there are: to prove a refused request changed nothing. */
const snapshot = async () =>
  JSON.stringify({
    resources: await app.db.selectFrom('resources').selectAll().orderBy('uri').execute(),
    accounts: await app.db.selectFrom('accounts').selectAll().orderBy('email').execute(),
    grants: await app.db.selectFrom('oidc_payloads').select(['model', 'id']).where('model', 'in', ['Grant', 'RefreshToken', 'Session']).orderBy('id').execute(),
    events: (await app.db.selectFrom('audit_events').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()).n,
  });

async function lastEvent(event: string) {
  const [record] = await app.audit.list({ event, limit: 1 });
  return record;
}

const ACTOR = 'admin:admin@example.com (API token ci)';

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
    const event = await lastEvent('admin.api_token_created');
    expect(event).toMatchObject({ actor: 'admin:admin@example.com', details: { token_id: body.id, name: 'ci' } });
    expect(JSON.stringify(event)).not.toContain(token);
  });

  test('anonymous callers, unknown tokens and non-admins get 401 JSON on every operation', async () => {
    const paths: Array<[string, string]> = [
      ['GET', '/me'], ['GET', '/clients'], ['GET', '/clients/x'], ['POST', '/clients/x/approve'], ['POST', '/clients/x/reject'],
      ['POST', '/clients/x/suspend'], ['GET', '/resources'], ['POST', '/resources'], ['DELETE', '/resources?uri=x'], ['GET', '/audit'],
      ['GET', '/tokens'], ['POST', '/tokens'], ['DELETE', '/tokens/x'], ['PUT', '/resources?uri=x'], ['GET', '/users'], ['POST', '/users'],
      ['POST', '/users/x/disable'], ['POST', '/users/x/enable'], ['POST', '/users/x/password'], ['GET', '/connections'], ['DELETE', '/connections/x'],
    ];
    const before = await snapshot();
    for (const [method, path] of paths) {
      for (const bearer of [undefined, 'gh_pat_unknown', 'not-a-token']) {
        const response = await api(path, { method, token: bearer, body: method === 'POST' ? {} : undefined });
        expect(response.status, `${method} ${path} ${bearer}`).toBe(401);
        expect(response.headers.get('www-authenticate')).toMatch(/^Bearer realm="gatehouse-admin"/);
        expect(((await response.json()) as { error: string }).error).toMatch(/unauthorized|invalid_token/);
      }
    }
    expect(await snapshot()).toBe(before);
    // A session without its CSRF token changes nothing either.
    expect((await sessionApi('/resources?uri=https://mcp.example.com', { method: 'PUT', body: { name: 'CSRF' } })).status).toBe(403);
    expect(await snapshot()).toBe(before);
  });

  test('a token acts as its admin; a revoked one stops working; a password never opens the API', async () => {
    const me = await api('/me', { token });
    expect(await me.json()).toEqual({ email: 'admin@example.com', via: 'token', token_name: 'ci' });
    const second = (await (await api('/tokens', { method: 'POST', body: { name: 'temp' }, token })).json()) as { id: string; token: string };
    expect(await lastEvent('admin.api_token_created')).toMatchObject({ actor: ACTOR, details: { token_id: second.id, name: 'temp' } });
    expect((await api('/tokens/' + second.id, { method: 'DELETE', token })).status).toBe(204);
    expect((await api('/me', { token: second.token })).status).toBe(401);
    const revoked = await lastEvent('admin.api_token_revoked');
    expect(revoked).toMatchObject({ actor: ACTOR, details: { token_id: second.id, name: 'temp' } });
    expect(JSON.stringify(revoked)).not.toContain(second.token);
    // Revoking it again is a 404 and records nothing.
    expect((await api('/tokens/' + second.id, { method: 'DELETE', token })).status).toBe(404);
    expect((await lastEvent('admin.api_token_revoked'))!.id).toBe(revoked!.id);
    // A user's password never opens the API (below); and see "another administrator's tokens".
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
    expect(await lastEvent('resource.added')).toMatchObject({ actor: ACTOR, resource: 'https://tools.example.com/mcp', details: { scopes: ['run'], access_token_ttl: 300 } });
    expect((await api('/resources?uri=https://tools.example.com/mcp', { method: 'DELETE', token })).status).toBe(204);
    expect(await lastEvent('resource.removed')).toMatchObject({ actor: ACTOR, resource: 'https://tools.example.com/mcp', details: { name: 'Tools', live_connections: 0 } });
    expect((await api('/resources?uri=https://tools.example.com/mcp', { method: 'DELETE', token })).status).toBe(404);
  });

  test('resources: edit everything but the URI; omitted fields keep their values; bad input is a 400 that changes nothing', async () => {
    const uri = 'https://edit.example.com/mcp';
    const scopes = [{ name: 'read', description: 'Read' }, { name: 'write', description: 'Write' }];
    expect((await api('/resources', { method: 'POST', token, body: { uri, name: 'Edit me', scopes, defaultScopes: ['read'] } })).status).toBe(201);
    const path = `/resources?uri=${encodeURIComponent('https://EDIT.example.com:443/mcp')}`;

    const before = await snapshot();
    for (const [body, message] of [
      [{ name: '  ' }, 'name must not be empty'],
      [{ scopes: [] }, 'at least one scope is required'],
      [{ scopes: [{ name: 'openid', description: 'x' }] }, 'reserved'],
      [{ scopes: [{ name: 'run', description: '' }] }, 'needs a description'],
      [{ scopes: 'read write' }, 'scopes must be an array'],
      [{ defaultScopes: ['delete'] }, 'default scope "delete"'],
      [{ accessTokenTtl: 5 }, 'between 30 and 86400'],
      [{ accessTokenTtl: '10m' }, 'accessTokenTtl must be a number'],
      [{ uri: 'https://elsewhere.example.com', name: 'Moved' }, 'the uri cannot change'],
    ] as const) {
      const response = await api(path, { method: 'PUT', token, body });
      expect(response.status, JSON.stringify(body)).toBe(400);
      expect(await response.json()).toEqual({ error: 'invalid_request', error_description: expect.stringContaining(message) });
    }
    expect((await api('/resources', { method: 'PUT', token, body: { name: 'x' } })).status).toBe(400);
    expect((await api('/resources?uri=https://unknown.example.com', { method: 'PUT', token, body: { name: 'x' } })).status).toBe(404);
    expect(await snapshot()).toBe(before);

    // Renamed, a scope replaced, a shorter lifetime; "read" stays the default.
    const edited = await api(path, { method: 'PUT', token, body: { uri, name: 'Edited', scopes: [{ name: 'read', description: 'Read it all' }, { name: 'run', description: 'Run tools' }], accessTokenTtl: 120 } });
    expect(edited.status).toBe(200);
    const expected = { uri, name: 'Edited', scopes: [{ name: 'read', description: 'Read it all' }, { name: 'run', description: 'Run tools' }], defaultScopes: ['read'], accessTokenTtl: 120 };
    expect(await edited.json()).toMatchObject(expected);
    expect(await app.resources.resolve(uri)).toMatchObject(expected);
    expect(await lastEvent('resource.updated')).toMatchObject({
      actor: ACTOR,
      resource: uri,
      details: {
        name: 'Edited',
        scopes: ['read', 'run'],
        added_scopes: ['run'],
        removed_scopes: ['write'],
        default_scopes: ['read'],
        access_token_ttl: 120,
        previous: { name: 'Edit me', scopes: ['read', 'write'], default_scopes: ['read'], access_token_ttl: 600 },
      },
    });
    // Only the default scopes change.
    expect(await (await api(path, { method: 'PUT', token, body: { defaultScopes: ['run'] } })).json()).toMatchObject({ ...expected, defaultScopes: ['run'] });
    expect((await api(path, { method: 'DELETE', token })).status).toBe(204);
  });

  test('users: list without password hashes, add, disable (never yourself), enable, set a password; bad input changes nothing', async () => {
    const listed = await api('/users', { token });
    expect(listed.status).toBe(200);
    const { users } = (await listed.json()) as { users: Array<{ id: string; email: string; role: string }> };
    expect(users.map((u) => [u.email, u.role])).toEqual(expect.arrayContaining([['admin@example.com', 'admin'], ['alice@example.com', 'user']]));
    const adminId = users.find((u) => u.email === 'admin@example.com')!.id;

    const created = await api('/users', { method: 'POST', token, body: { email: 'dora@example.com', password: TEST_PASSWORD } });
    expect(created.status).toBe(201);
    const dora = (await created.json()) as Record<string, unknown> & { id: string };
    expect(dora).toMatchObject({ email: 'dora@example.com', role: 'user', disabledAt: null });
    expect(Object.keys(dora).sort()).toEqual(['createdAt', 'disabledAt', 'email', 'id', 'role']);
    expect(await lastEvent('user.created')).toMatchObject({ actor: ACTOR, accountId: dora.id, details: { email: 'dora@example.com', role: 'user' } });
    const boss = await api('/users', { method: 'POST', token, body: { email: 'boss@example.com', password: TEST_PASSWORD, role: 'admin' } });
    expect(await boss.json()).toMatchObject({ email: 'boss@example.com', role: 'admin' });
    const everyone = await (await api('/users', { token })).text();
    expect(everyone).not.toMatch(/argon2|password/i);

    const before = await snapshot();
    for (const [path, body, message] of [
      ['/users', { email: 'DORA@example.com', password: TEST_PASSWORD }, 'already exists'],
      ['/users', { email: 'not-an-email', password: TEST_PASSWORD }, 'is not an email address'],
      ['/users', { email: 'erin@example.com', password: 'short' }, 'the password must have'],
      ['/users', { email: 'erin@example.com', password: TEST_PASSWORD, role: 'root' }, 'role must be one of'],
      ['/users', { email: 'erin@example.com' }, 'email and password'],
      [`/users/${adminId}/disable`, {}, 'you cannot disable your own account'],
      [`/users/${dora.id}/password`, { password: 'short' }, 'the password must have'],
      [`/users/${dora.id}/password`, {}, 'password is a required string'],
    ] as const) {
      const response = await api(path, { method: 'POST', token, body });
      expect(response.status, `${path} ${JSON.stringify(body)}`).toBe(400);
      expect(await response.json()).toEqual({ error: 'invalid_request', error_description: expect.stringContaining(message) });
    }
    for (const action of ['disable', 'enable', 'password']) {
      const response = await api(`/users/00000000-0000-0000-0000-000000000000/${action}`, { method: 'POST', token, body: { password: TEST_PASSWORD } });
      expect(response.status, action).toBe(404);
    }
    expect(await snapshot()).toBe(before);

    const disabled = await api(`/users/${dora.id}/disable`, { method: 'POST', token });
    expect(disabled.status).toBe(200);
    expect(await disabled.json()).toMatchObject({ id: dora.id, disabledAt: expect.any(String), endedSessions: 0 });
    expect(await app.accounts.authenticate('dora@example.com', TEST_PASSWORD)).toBeUndefined();
    expect(await lastEvent('user.disabled')).toMatchObject({ actor: ACTOR, accountId: dora.id, details: { email: 'dora@example.com', ended_sessions: 0 } });
    const enabled = await api(`/users/${dora.id}/enable`, { method: 'POST', token });
    expect(await enabled.json()).toMatchObject({ id: dora.id, disabledAt: null });
    expect(await lastEvent('user.enabled')).toMatchObject({ actor: ACTOR, accountId: dora.id });
    const reset = await api(`/users/${dora.id}/password`, { method: 'POST', token, body: { password: 'a brand new password' } });
    expect(reset.status).toBe(200);
    expect(await reset.text()).not.toMatch(/argon2|brand new/);
    expect(await app.accounts.authenticate('dora@example.com', 'a brand new password')).toMatchObject({ email: 'dora@example.com' });
    const resetEvent = await lastEvent('user.password_reset');
    expect(resetEvent).toMatchObject({ actor: ACTOR, accountId: dora.id, details: { email: 'dora@example.com' } });
    expect(JSON.stringify(resetEvent)).not.toContain('brand new');
  });

  test('connections: list filtered by client and user, revoke one (its refresh token stops working), audited', async () => {
    const client = await registerClient(app.issuer, { client_name: 'Connected Client' });
    expect((await api(`/clients/${encodeURIComponent(client.client_id)}/approve`, { method: 'POST', token, body: { ceiling: [{ resource: RESOURCE, scopes: ['files:read'] }] } })).status).toBe(200);
    const { tokens } = await obtainTokens(app.issuer, { client, resource: RESOURCE, scope: 'files:read' });
    expect(tokens.status).toBe(200);
    const alice = (await app.accounts.getByEmail('alice@example.com'))!;

    type Listed = { connections: Array<{ grantId: string; clientId: string; accountId: string; email: string; resources: Record<string, string[]> }> };
    const list = async (query: string) => ((await (await api(`/connections${query}`, { token })).json()) as Listed).connections;
    const byClient = await list(`?client_id=${encodeURIComponent(client.client_id)}`);
    expect(byClient).toEqual([expect.objectContaining({ clientId: client.client_id, accountId: alice.id, email: 'alice@example.com', resources: { [RESOURCE]: ['files:read'] } })]);
    expect((await list(`?account_id=${alice.id}`)).map((c) => c.grantId)).toContain(byClient[0]!.grantId);
    expect(await list(`?client_id=${encodeURIComponent(client.client_id)}&account_id=00000000-0000-0000-0000-000000000000`)).toEqual([]);
    expect((await list('')).length).toBeGreaterThan(0);

    const grantId = byClient[0]!.grantId;
    expect((await api(`/connections/${grantId}`, { method: 'DELETE', token })).status).toBe(204);
    expect(await list(`?client_id=${encodeURIComponent(client.client_id)}`)).toEqual([]);
    const refreshed = await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: tokens.body.refresh_token, client_id: client.client_id });
    expect(refreshed.body.error).toBe('invalid_grant');
    expect(await lastEvent('grant.revoked')).toMatchObject({
      actor: ACTOR,
      clientId: client.client_id,
      accountId: alice.id,
      resource: RESOURCE,
      details: { grant_id: grantId, email: 'alice@example.com', resources: { [RESOURCE]: ['files:read'] } },
    });
    const before = await snapshot();
    expect((await api(`/connections/${grantId}`, { method: 'DELETE', token })).status).toBe(404);
    expect((await api('/connections/not a grant', { method: 'DELETE', token })).status).toBe(404);
    expect(await snapshot()).toBe(before);
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
        'GET /resources', 'POST /resources', 'PUT /resources', 'DELETE /resources', 'GET /audit', 'GET /tokens', 'POST /tokens', 'DELETE /tokens/{id}',
        'GET /users', 'POST /users', 'POST /users/{id}/disable', 'POST /users/{id}/enable', 'POST /users/{id}/password',
        'GET /connections', 'DELETE /connections/{grantId}',
      ].sort(),
    );
    // …and each described operation exists: an authenticated call never answers 404 Not Found for the route itself.
    for (const op of described) {
      const [method, path] = op.split(' ') as [string, string];
      const concrete = path.replace(/\{\w+\}/, 'nonexistent');
      const r = await api(concrete, { method, token, body: method === 'GET' || method === 'DELETE' ? undefined : {} });
      expect(r.status, op).not.toBe(405);
      if (r.status === 404) expect(((await r.json()) as { error: string }).error, op).toBe('not_found');
    }
  });
});

describe('another administrator\'s tokens (issue 15 §9)', () => {
  test('any administrator may revoke any API token, audited with its owner', async () => {
    const other = await app.accounts.create('other-admin@example.com', TEST_PASSWORD, 'admin');
    const theirs = await createApiTokens(app.db).create(other.id, 'their laptop');
    expect((await api('/me', { token: theirs.token })).status).toBe(200);
    expect((await api('/tokens/' + theirs.info.id, { method: 'DELETE', token })).status).toBe(204);
    expect((await api('/me', { token: theirs.token })).status).toBe(401);
    expect(await lastEvent('admin.api_token_revoked')).toMatchObject({ actor: ACTOR, accountId: other.id, details: { token_id: theirs.info.id, name: 'their laptop', owner_account_id: other.id } });
  });

  test('a password reset and a disable revoke the account\'s tokens, and enabling it again does not bring them back', async () => {
    const other = await app.accounts.create('reset-admin@example.com', TEST_PASSWORD, 'admin');
    const first = await createApiTokens(app.db).create(other.id, 'before the reset');
    const reset = await api(`/users/${other.id}/password`, { method: 'POST', token, body: { password: 'another long passphrase' } });
    expect(reset.status).toBe(200);
    expect((await api('/me', { token: first.token })).status).toBe(401);
    expect(await lastEvent('user.password_reset')).toMatchObject({ accountId: other.id, details: { revoked_api_tokens: 1 } });

    const second = await createApiTokens(app.db).create(other.id, 'before the disable');
    expect((await api(`/users/${other.id}/disable`, { method: 'POST', token })).status).toBe(200);
    expect((await api(`/users/${other.id}/enable`, { method: 'POST', token })).status).toBe(200);
    expect((await api('/me', { token: second.token })).status).toBe(401);
    expect(await lastEvent('user.disabled')).toMatchObject({ accountId: other.id, details: { revoked_api_tokens: 1 } });
  });
});
