/**
 * Admin console pages for MCP servers, users and connections: who may use them, that their forms
 * are protected, that each action does what it says (in discovery metadata, at /authorize and on
 * the next refresh), that bad input is a 400 that says why and changes nothing, and that every
 * action is in the audit trail.
 */
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ADMIN_EMAIL, createAdmin, formBody, signInAdmin, type AdminBrowser } from '../support/admin.ts';
import { seed, startTestApp, TEST_PASSWORD, type TestApp } from '../support/app.ts';
import { authorizationUrl, authorizeInBrowser, browse, CookieJar, exchangeCode, pkcePair, registerClient, tokenRequest } from '../support/oauth.ts';

const RESOURCE = 'https://mcp.example.com';
const TOOLS = 'https://tools.example.com/mcp';
const ACTOR = `admin:${ADMIN_EMAIL}`;

let app: TestApp;
let admin: AdminBrowser;
let adminId: string;
let aliceId: string;

beforeAll(async () => {
  app = await startTestApp();
  ({ account: { id: aliceId } } = await seed(app, { uri: RESOURCE }));
  adminId = (await createAdmin(app)).id;
  admin = await signInAdmin(app);
});
afterAll(() => app?.close());

/** Runs /authorize as `email` through sign-in and consent, exchanges the code; returns the tokens. */
async function connect(options: { email: string; password: string; resource?: string; scope?: string; client?: Record<string, any>; jar?: CookieJar }) {
  const client = options.client ?? (await registerClient(app.issuer, { client_name: `Client of ${options.email}` }));
  const resource = options.resource ?? RESOURCE;
  const { verifier, challenge } = pkcePair();
  const { callback, pages } = await authorizeInBrowser(
    authorizationUrl(app.issuer, {
      client_id: client.client_id,
      response_type: 'code',
      redirect_uri: client.redirect_uris[0],
      code_challenge: challenge,
      code_challenge_method: 'S256',
      resource,
      scope: options.scope,
    }),
    { email: options.email, password: options.password, jar: options.jar },
  );
  const code = callback.searchParams.get('code');
  if (!code) throw new Error(`no code: ${callback}`);
  const tokens = await exchangeCode(app.issuer, client, code, verifier, resource);
  expect(tokens.status).toBe(200);
  return { client, tokens: tokens.body, pages };
}

const refresh = (client: Record<string, any>, refreshToken: string) =>
  tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: refreshToken, client_id: client.client_id });

const scopesSupported = async () =>
  ((await (await fetch(`${app.issuer}/.well-known/oauth-authorization-server`)).json()) as { scopes_supported: string[] }).scopes_supported;

/** Everything an administrator can change, to prove a refused request changed none of it. */
const snapshot = async () => JSON.stringify({ resources: await app.resources.list(), users: await app.accounts.list(), grants: await grantRows() });
const grantRows = () => app.db.selectFrom('oidc_payloads').select(['model', 'id']).where('model', 'in', ['Grant', 'RefreshToken']).orderBy('id').execute();

const serverId = async (uri: string) => (await app.resources.resolve(uri))!.id;
const userId = async (email: string) => (await app.accounts.list()).find((u) => u.email === email)!.id;

/** The rows of the Connections table (the filter's options name every client and user too). */
const connectionRows = (html: string) => html.split('<tr>').filter((r) => r.includes('/revoke'));

/** The grant id in the Connections row that names this client. */
function grantIdIn(html: string, clientId: string): string {
  const row = connectionRows(html).find((r) => r.includes(clientId));
  const id = row && /action="\/connections\/([^/"]+)\/revoke"/.exec(row)?.[1];
  if (!id) throw new Error(`no connection of ${clientId} on the page`);
  return id;
}

async function lastEvent(event: string) {
  const [record] = await app.audit.list({ event, limit: 1 });
  return record;
}

describe('who may use the pages, and how their forms are protected', () => {
  const pages = async () => ['/servers', `/servers/${await serverId(RESOURCE)}`, '/users', '/connections', `/connections?user=${aliceId}`];
  const actions = async (): Promise<[string, Record<string, string>][]> => {
    const id = await serverId(RESOURCE);
    return [
      ['/servers', { uri: 'https://evil.example.com', name: 'Evil', scopes: 'x=X', access_token_ttl: '600' }],
      [`/servers/${id}`, { name: 'Renamed', 'description:files:read': 'Read', 'description:files:write': 'Write', access_token_ttl: '600' }],
      [`/servers/${id}/remove`, { confirm: RESOURCE }],
      ['/users', { email: 'mallory@example.com', password: 'a long enough password' }],
      [`/users/${aliceId}/disable`, {}],
      [`/users/${aliceId}/password`, { password: 'a new long password' }],
      ['/connections/some-grant/revoke', {}],
    ];
  };

  test('anonymous visitors are sent to sign-in for every page, and refused every action', async () => {
    const before = await snapshot();
    const jar = new CookieJar();
    for (const path of await pages()) {
      const response = await browse(jar, `${app.adminUrl}${path}`);
      expect(response.status, path).toBe(303);
      expect(response.headers.get('location')).toBe('/sign-in');
    }
    for (const [path, fields] of await actions()) {
      const response = await browse(jar, `${app.adminUrl}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', origin: app.adminUrl },
        body: formBody({ ...fields, csrf: admin.csrf }),
      });
      expect(response.status, path).toBe(401);
    }
    expect(await snapshot()).toBe(before);
  });

  test('a missing or wrong CSRF token is refused and changes nothing', async () => {
    const before = await snapshot();
    for (const [path, fields] of await actions()) {
      for (const csrf of ['', 'wrong-token', `${admin.csrf}x`]) {
        const response = await admin.post(path, fields, { csrf });
        expect(response.status, `${path} csrf=${csrf}`).toBe(403);
      }
    }
    expect(await snapshot()).toBe(before);
  });

  test('a cross-origin post is refused even with the token', async () => {
    const before = await snapshot();
    const response = await admin.post(`/users/${aliceId}/disable`, {}, { headers: { origin: 'https://evil.example.com' } });
    expect(response.status).toBe(403);
    expect(await snapshot()).toBe(before);
  });

  test('every form on the pages carries the CSRF token, and the navigation links them in order', async () => {
    for (const path of await pages()) {
      const html = await (await admin.get(path)).text();
      const forms = html.match(/<form method="post"[\s\S]*?<\/form>/g) ?? [];
      expect(forms.length, path).toBeGreaterThan(0);
      for (const form of forms) expect(form, path).toContain(`name="csrf" value="${admin.csrf}"`);
      const nav = [.../<nav[\s\S]*?<\/nav>/.exec(html)![0].matchAll(/<a href="\/([a-z]+)"/g)].map((m) => m[1]);
      expect(nav).toEqual(['pending', 'clients', 'servers', 'users', 'connections', 'audit']);
    }
  });
});

describe('MCP servers', () => {
  test('the list shows each server with its scopes, descriptions, defaults and token lifetime', async () => {
    const html = await (await admin.get('/servers')).text();
    expect(html).toContain('Example MCP');
    expect(html).toContain(RESOURCE);
    expect(html).toContain('Read your files');
    expect(html).toMatch(/<code>files:read<\/code> <span class="tag">default<\/span>/);
    expect(html).not.toMatch(/<code>files:write<\/code> <span class="tag">default<\/span>/);
    expect(html).toContain('10 minutes');
  });

  test('add a server: it is registered, advertised in discovery metadata, and audited', async () => {
    const response = await admin.post('/servers', {
      uri: TOOLS,
      name: 'Tools',
      scopes: 'tools:run=Run tools\r\n\r\ntools:list = List tools\n',
      default_scopes: 'tools:list',
      access_token_ttl: '5m',
    });
    expect(response.status).toBe(303);
    const id = await serverId(TOOLS);
    expect(response.headers.get('location')).toBe(`/servers/${id}?saved=1`);
    expect(await app.resources.resolve(TOOLS)).toMatchObject({
      name: 'Tools',
      scopes: [
        { name: 'tools:run', description: 'Run tools' },
        { name: 'tools:list', description: 'List tools' },
      ],
      defaultScopes: ['tools:list'],
      accessTokenTtl: 300,
    });
    expect(await scopesSupported()).toEqual(expect.arrayContaining(['files:read', 'tools:run', 'tools:list']));
    const page = await (await admin.get(`/servers/${id}?saved=1`)).text();
    expect(page).toContain('Saved.');
    expect(page).toContain('value="5m"');
    expect(await lastEvent('resource.added')).toMatchObject({
      actor: ACTOR,
      resource: TOOLS,
      details: { name: 'Tools', scopes: ['tools:run', 'tools:list'], default_scopes: ['tools:list'], access_token_ttl: 300 },
    });
  });

  test.each([
    ['a scope line without a description', { scopes: 'tools:run' }, 'must be NAME=DESCRIPTION'],
    ['an http URI that is not localhost', { uri: 'http://bad.example.com' }, 'resource must be https'],
    ['a URI with a fragment', { uri: 'https://bad.example.com/#x' }, 'fragment'],
    ['a reserved scope', { scopes: 'openid=Sign you in' }, 'scope &quot;openid&quot; is reserved'],
    ['a scope named twice', { scopes: 'a=A\na=Again' }, 'scope &quot;a&quot; is listed twice'],
    ['a default that is not a scope', { default_scopes: 'nope' }, 'default scope &quot;nope&quot; is not one of'],
    ['no name', { name: '  ' }, 'name must not be empty'],
    ['no scopes', { scopes: '' }, 'at least one scope is required'],
    ['a lifetime that is not a duration', { access_token_ttl: 'five minutes' }, 'must be a number of seconds'],
    ['a lifetime that is too short', { access_token_ttl: '10' }, 'between 30 and 86400 seconds'],
    ['a URI that is already registered', { uri: 'https://MCP.example.com/' }, 'already registered'],
  ])('adding a server with %s is a 400 that says why, keeps the form, and changes nothing', async (_what, change, message) => {
    const before = await snapshot();
    const events = (await app.audit.list({ event: 'resource.added' })).length;
    const fields = { uri: 'https://new.example.com', name: 'New server', scopes: 'new:read=Read new things', default_scopes: '', access_token_ttl: '600', ...change };
    const response = await admin.post('/servers', fields);
    expect(response.status).toBe(400);
    const html = await response.text();
    expect(html).toContain('role="alert"');
    expect(html).toContain(message);
    if (fields.name.trim()) expect(html).toContain(`value="${fields.name}"`);
    expect(await snapshot()).toBe(before);
    expect((await app.audit.list({ event: 'resource.added' })).length).toBe(events);
  });

  test('edit a server: name, descriptions, default scopes, added scopes and lifetime change; the URI does not', async () => {
    const id = await serverId(TOOLS);
    const page = await (await admin.get(`/servers/${id}`)).text();
    expect(page).toContain('name="description:tools:run" value="Run tools"');
    expect(page).toMatch(/name="default" value="tools:list"[^>]*checked/);
    const response = await admin.post(`/servers/${id}`, {
      uri: 'https://elsewhere.example.com',
      name: 'Tools v2',
      'description:tools:run': 'Run any tool',
      'description:tools:list': 'List tools',
      default: ['tools:run', 'tools:list'],
      new_scopes: 'tools:admin=Administer tools',
      access_token_ttl: '1h',
    });
    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toBe(`/servers/${id}?saved=1`);
    expect(await app.resources.resolve(TOOLS)).toMatchObject({
      id,
      uri: TOOLS,
      name: 'Tools v2',
      scopes: [
        { name: 'tools:run', description: 'Run any tool' },
        { name: 'tools:list', description: 'List tools' },
        { name: 'tools:admin', description: 'Administer tools' },
      ],
      defaultScopes: ['tools:run', 'tools:list'],
      accessTokenTtl: 3600,
    });
    expect(await app.resources.resolve('https://elsewhere.example.com')).toBeUndefined();
    expect(await scopesSupported()).toContain('tools:admin');
    expect(await lastEvent('resource.updated')).toMatchObject({
      actor: ACTOR,
      resource: TOOLS,
      details: { name: 'Tools v2', added_scopes: ['tools:admin'], removed_scopes: [], access_token_ttl: 3600, previous: { name: 'Tools', access_token_ttl: 300 } },
    });
  });

  test.each([
    ['an empty name', { name: '' }, 'name must not be empty'],
    ['every scope removed', { remove: ['tools:run', 'tools:list', 'tools:admin'] }, 'at least one scope is required'],
    ['an added scope that exists', { new_scopes: 'tools:run=Again' }, 'scope &quot;tools:run&quot; is listed twice'],
    ['an empty description', { 'description:tools:list': ' ' }, 'scope &quot;tools:list&quot; needs a description'],
    ['a malformed added scope', { new_scopes: 'no equals sign' }, 'must be NAME=DESCRIPTION'],
    ['a lifetime that is too long', { access_token_ttl: '2d' }, 'between 30 and 86400 seconds'],
  ])('editing with %s is a 400 that says why, keeps what was typed, and changes nothing', async (_what, change, message) => {
    const id = await serverId(TOOLS);
    const before = await snapshot();
    const fields = {
      name: 'Tools v3',
      'description:tools:run': 'Typed but not saved',
      'description:tools:list': 'List tools',
      'description:tools:admin': 'Administer tools',
      access_token_ttl: '1h',
      ...change,
    };
    const response = await admin.post(`/servers/${id}`, fields);
    expect(response.status).toBe(400);
    const html = await response.text();
    expect(html).toContain(message);
    expect(html).toContain('value="Typed but not saved"');
    expect(await snapshot()).toBe(before);
  });

  test('each scope\'s includes: shown on the list and the edit form, changed by the form, refused with a reason, and escaped', async () => {
    const notes = 'https://notes.example.com/mcp';
    const { id } = await app.resources.add({
      uri: notes,
      name: 'Notes',
      scopes: [
        { name: 'notes:read', description: 'Read your notes' },
        { name: 'notes:write', description: 'Change your notes' },
        { name: 'notes:admin', description: 'Administer your notes' },
      ],
      accessTokenTtl: 600,
    });
    const form = (change: Record<string, string | string[]>) => ({ name: 'Notes', access_token_ttl: '10m', 'includes:notes:read': '', 'includes:notes:write': '', ...change });
    expect(await (await admin.get(`/servers/${id}`)).text()).toContain('name="includes:notes:admin" value=""');

    const saved = await admin.post(`/servers/${id}`, form({ 'includes:notes:admin': 'notes:read, notes:write' }));
    expect(saved.status).toBe(303);
    expect((await app.resources.resolve(notes))!.scopes).toEqual([
      { name: 'notes:read', description: 'Read your notes' },
      { name: 'notes:write', description: 'Change your notes' },
      { name: 'notes:admin', description: 'Administer your notes', includes: ['notes:read', 'notes:write'] },
    ]);
    expect(await lastEvent('resource.updated')).toMatchObject({
      actor: ACTOR,
      resource: notes,
      details: { scope_includes: { 'notes:admin': ['notes:read', 'notes:write'] }, previous: { scope_includes: {} } },
    });
    expect(await (await admin.get(`/servers/${id}`)).text()).toContain('name="includes:notes:admin" value="notes:read notes:write"');
    expect(await (await admin.get('/servers')).text()).toMatch(
      /<code>notes:admin<\/code>( <span class="tag">default<\/span>)? Administer your notes <span class="muted">\(includes <code>notes:read<\/code>, <code>notes:write<\/code>\)<\/span>/,
    );

    const before = await snapshot();
    for (const [change, message] of [
      [{ 'includes:notes:admin': 'notes:read notes:delete' }, 'scope &quot;notes:admin&quot; includes &quot;notes:delete&quot;, which is not one of the resource&#39;s scopes'],
      [{ 'includes:notes:admin': 'notes:admin' }, 'scope &quot;notes:admin&quot; includes itself'],
      [{ 'includes:notes:admin': 'notes:read notes:read' }, 'scope &quot;notes:admin&quot; includes &quot;notes:read&quot; twice'],
      [{ 'includes:notes:admin': 'notes:read notes:write', remove: 'notes:write' }, 'scope &quot;notes:write&quot; cannot be removed while scope &quot;notes:admin&quot; includes it'],
      [{ 'includes:notes:admin': '"><script>alert(1)</script>' }, 'includes &quot;&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&quot;, which is not one'],
    ] as const) {
      const refused = await admin.post(`/servers/${id}`, form(change));
      expect(refused.status, JSON.stringify(change)).toBe(400);
      const html = await refused.text();
      expect(html).toContain(message);
      // What was typed stays in the field, escaped.
      expect(html).toContain(`name="includes:notes:admin" value="${change['includes:notes:admin'].replaceAll('&', '&amp;').replaceAll('"', '&quot;').replaceAll('<', '&lt;').replaceAll('>', '&gt;')}"`);
      expect(html).not.toContain('<script>');
    }
    expect(await snapshot()).toBe(before);

    // An emptied field includes nothing again.
    expect((await admin.post(`/servers/${id}`, form({ 'includes:notes:admin': ' ' }))).status).toBe(303);
    expect((await app.resources.resolve(notes))!.scopes[2]).toEqual({ name: 'notes:admin', description: 'Administer your notes' });
    await app.resources.remove(notes);
  });

  test('removing a scope that a ceiling and a connection use is allowed, with a warning before and after', async () => {
    const id = await serverId(TOOLS);
    // A connection holding tools:run and tools:list, and a client approved for tools:list.
    const { client, tokens } = await connect({ email: 'alice@example.com', password: TEST_PASSWORD, resource: TOOLS, scope: 'tools:run tools:list' });
    expect(decodeJwt(tokens.access_token).scope).toBe('tools:run tools:list');
    const approved = await registerClient(app.issuer, { client_name: 'Approved for lists' });
    await app.clients.approve(approved.client_id, [{ resource: TOOLS, scopes: ['tools:list'] }], 'test');

    const page = await (await admin.get(`/servers/${id}`)).text();
    const row = page.split('<tr').find((r) => r.includes('<code>tools:list</code>'))!;
    expect(row).toContain('1 client ceiling, 1 connection');
    expect(page).toContain('Removing a scope that is in use is allowed');
    expect(page).toContain('Approved for lists');

    const response = await admin.post(`/servers/${id}`, {
      name: 'Tools v2',
      'description:tools:run': 'Run any tool',
      'description:tools:list': 'List tools',
      'description:tools:admin': 'Administer tools',
      default: ['tools:run', 'tools:list'],
      remove: 'tools:list',
      access_token_ttl: '1h',
    });
    expect(response.status).toBe(303);
    const after = await (await admin.get(response.headers.get('location')!)).text();
    expect(after).toMatch(/Removed <code>tools:list<\/code>, which 1 approved client had in its ceiling and 1 connection held/);
    // The client approved for tools:list alone is left with nothing here, and the page says so.
    expect(after).toMatch(/Approved for lists<\/bdi><\/a>: approved for this server, but no scope it still offers is left in its ceiling/);
    expect((await app.resources.resolve(TOOLS))!.defaultScopes).toEqual(['tools:run']);
    expect(await lastEvent('resource.updated')).toMatchObject({ details: { removed_scopes: ['tools:list'] } });

    // The connection keeps working, without the removed scope.
    const refreshed = await refresh(client, tokens.refresh_token);
    expect(refreshed.status).toBe(200);
    expect(decodeJwt(refreshed.body.access_token).scope).toBe('tools:run');
    expect(await scopesSupported()).not.toContain('tools:list');
  });

  test('removing a server needs its URI typed; then it is gone from discovery and its connections stop refreshing', async () => {
    const id = await serverId(TOOLS);
    const { client, tokens } = await connect({ email: 'alice@example.com', password: TEST_PASSWORD, resource: TOOLS, scope: 'tools:run' });
    const before = await snapshot();
    for (const confirm of ['', 'yes', 'https://tools.example.com']) {
      const refused = await admin.post(`/servers/${id}/remove`, { confirm });
      expect(refused.status).toBe(400);
      expect(await refused.text()).toContain(`type its URI exactly: ${TOOLS}`);
    }
    expect(await snapshot()).toBe(before);

    const page = await (await admin.get(`/servers/${id}`)).text();
    expect(page).toMatch(/It is in use: \d+ connections?/);
    const response = await admin.post(`/servers/${id}/remove`, { confirm: TOOLS });
    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toBe('/servers');
    expect(await app.resources.resolve(TOOLS)).toBeUndefined();
    expect(await scopesSupported()).not.toContain('tools:run');
    expect(await (await admin.get('/servers')).text()).not.toContain(TOOLS);
    expect((await admin.get(`/servers/${id}`)).status).toBe(404);
    expect(await lastEvent('resource.removed')).toMatchObject({ actor: ACTOR, resource: TOOLS, details: { name: 'Tools v2' } });

    const refreshed = await refresh(client, tokens.refresh_token);
    expect(refreshed.status).toBe(400);
    expect(['invalid_grant', 'invalid_target']).toContain(refreshed.body.error);
  });

  test('an unknown or malformed server id is a 404', async () => {
    expect((await admin.get('/servers/00000000-0000-0000-0000-000000000000')).status).toBe(404);
    expect((await admin.get('/servers/not-a-uuid')).status).toBe(404);
    expect((await admin.post('/servers/not-a-uuid', { name: 'x' })).status).toBe(404);
  });
});

describe('users', () => {
  const BOB = 'bob@example.com';
  const BOB_PASSWORD = 'bob has a long password';
  let bob: { client: Record<string, any>; refreshToken: string; jar: CookieJar };

  test('the list shows each account with role, creation time and status; no Disable button on your own row', async () => {
    const html = await (await admin.get('/users')).text();
    expect(html).toContain('alice@example.com');
    expect(html).toContain(ADMIN_EMAIL);
    const own = html.split('<tr').find((r) => r.includes(`id="user-${adminId}"`))!;
    expect(own).toContain('<span class="tag">you</span>');
    expect(own).toContain('<td>admin</td>');
    expect(own).not.toContain('/disable');
    const alice = html.split('<tr').find((r) => r.includes(`id="user-${aliceId}"`))!;
    expect(alice).toContain('<td>user</td>');
    expect(alice).toContain('active');
    expect(alice).toContain(`action="/users/${aliceId}/disable"`);
    expect(alice).toMatch(/<td><time datetime="\d{4}-\d\d-\d\dT[^"]+">\d{4}-\d\d-\d\d \d\d:\d\d UTC<\/time><\/td>/);
  });

  test('add a user, who can then sign in at /authorize', async () => {
    const response = await admin.post('/users', { email: BOB, password: BOB_PASSWORD });
    expect(response.status).toBe(303);
    const list = await (await admin.get(response.headers.get('location')!)).text();
    expect(list).toContain(`Added ${BOB}. They can sign in now.`);
    const id = await userId(BOB);
    expect(await lastEvent('user.created')).toMatchObject({ actor: ACTOR, accountId: id, details: { email: BOB, role: 'user' } });

    const jar = new CookieJar();
    const { client, tokens, pages } = await connect({ email: BOB, password: BOB_PASSWORD, jar });
    expect(pages.some((p) => p.includes('/login'))).toBe(true);
    expect(decodeJwt(tokens.access_token).sub).toBe(id);
    bob = { client, refreshToken: tokens.refresh_token, jar };
  });

  test.each([
    ['a short password', { email: 'carol@example.com', password: 'short' }, 'the password must have 8 to 1024 characters'],
    ['an invalid email', { email: 'not an email', password: 'long enough password' }, 'is not an email address'],
    ['an email that exists', { email: 'ALICE@example.com', password: 'long enough password' }, 'already exists'],
  ])('adding a user with %s is a 400 that says why and changes nothing', async (_what, fields, message) => {
    const before = await snapshot();
    const response = await admin.post('/users', fields);
    expect(response.status).toBe(400);
    const html = await response.text();
    expect(html).toContain(message);
    expect(html).not.toContain(fields.password);
    expect(await snapshot()).toBe(before);
  });

  test('disable: the refresh token fails with invalid_grant, sign-in fails, an open browser session gets no code', async () => {
    const id = await userId(BOB);
    const response = await admin.post(`/users/${id}/disable`);
    expect(response.status).toBe(303);
    expect(await (await admin.get(response.headers.get('location')!)).text()).toContain(`Disabled ${BOB}`);
    expect((await app.accounts.get(id))?.disabledAt).toBeInstanceOf(Date);
    expect(await lastEvent('user.disabled')).toMatchObject({ actor: ACTOR, accountId: id, details: { email: BOB, ended_sessions: 1 } });

    // oidc-provider looks the account up on every refresh (findAccount → findActiveById).
    const refreshed = await refresh(bob.client, bob.refreshToken);
    expect(refreshed.status).toBe(400);
    expect(refreshed.body.error).toBe('invalid_grant');

    // A fresh sign-in is refused...
    await expect(connect({ email: BOB, password: BOB_PASSWORD, client: bob.client })).rejects.toThrow(/unexpected page 401/);
    // ...and the browser that signed in before is asked to sign in again rather than handed a code.
    await expect(connect({ email: BOB, password: BOB_PASSWORD, client: bob.client, jar: bob.jar })).rejects.toThrow(/unexpected page 401/);

    const html = await (await admin.get('/users')).text();
    const row = html.split('<tr').find((r) => r.includes(`id="user-${id}"`))!;
    expect(row).toContain('disabled');
    expect(row).toContain(`action="/users/${id}/enable"`);
  });

  test('an administrator cannot disable themself', async () => {
    const before = await snapshot();
    const response = await admin.post(`/users/${adminId}/disable`);
    expect(response.status).toBe(400);
    expect(await response.text()).toContain('you cannot disable your own account');
    expect(await snapshot()).toBe(before);
    expect((await admin.get('/users')).status).toBe(200);
  });

  test('enable again: sign-in works and the same refresh token works again', async () => {
    const id = await userId(BOB);
    const response = await admin.post(`/users/${id}/enable`);
    expect(response.status).toBe(303);
    expect((await app.accounts.get(id))?.disabledAt).toBeNull();
    expect(await lastEvent('user.enabled')).toMatchObject({ actor: ACTOR, accountId: id });
    const refreshed = await refresh(bob.client, bob.refreshToken);
    expect(refreshed.status).toBe(200);
    bob.refreshToken = refreshed.body.refresh_token;
    await connect({ email: BOB, password: BOB_PASSWORD, client: bob.client });
  });

  test('reset a password: the old one stops working, the new one works', async () => {
    const id = await userId(BOB);
    const short = await admin.post(`/users/${id}/password`, { password: 'short' });
    expect(short.status).toBe(400);
    expect(await short.text()).toContain('the password must have 8 to 1024 characters');
    expect(await app.accounts.authenticate(BOB, BOB_PASSWORD)).toBeDefined();

    const response = await admin.post(`/users/${id}/password`, { password: 'a brand new password' });
    expect(response.status).toBe(303);
    expect(await (await admin.get(response.headers.get('location')!)).text()).toContain(`Set a new password for ${BOB}.`);
    expect(await app.accounts.authenticate(BOB, BOB_PASSWORD)).toBeUndefined();
    await expect(connect({ email: BOB, password: BOB_PASSWORD })).rejects.toThrow(/unexpected page 401/);
    await connect({ email: BOB, password: 'a brand new password' });
    const event = await lastEvent('user.password_reset');
    expect(event).toMatchObject({ actor: ACTOR, accountId: id, details: { email: BOB } });
    expect(JSON.stringify(event)).not.toContain('a brand new password');
  });

  test('an unknown user is a 404', async () => {
    for (const path of ['/users/00000000-0000-0000-0000-000000000000/disable', '/users/nope/enable', '/users/nope/password']) {
      expect((await admin.post(path, { password: 'long enough password' })).status, path).toBe(404);
    }
  });
});

describe('connections', () => {
  let client: Record<string, any>;
  let refreshToken: string;

  test('a grant made through a real flow is listed with client, user, MCP server, scopes, and when it was granted and used', async () => {
    client = await registerClient(app.issuer, { client_name: 'Connections Client' });
    const { tokens } = await connect({ email: 'alice@example.com', password: TEST_PASSWORD, client, scope: 'files:read files:write' });
    refreshToken = tokens.refresh_token;
    const html = await (await admin.get('/connections')).text();
    const row = connectionRows(html).find((r) => r.includes(client.client_id))!;
    expect(row).toContain('Connections Client');
    expect(row).toContain('alice@example.com');
    expect(row).toContain('Example MCP');
    expect(row).toContain(RESOURCE);
    expect(row).toContain('<code class="scope-chip">files:read</code>');
    expect(row).toContain('<code class="scope-chip">files:write</code>');
    const times = [...row.matchAll(/<td><time datetime="([^"]+)">/g)].map((m) => new Date(m[1]!).getTime());
    expect(times).toHaveLength(2); // granted, last used
    expect(times.every((t) => Math.abs(Date.now() - t) < 60_000)).toBe(true);
  });

  test('filter by client or by user', async () => {
    const rows = async (query: string) => connectionRows(await (await admin.get(`/connections?${query}`)).text());
    const byClient = await rows(`client=${encodeURIComponent(client.client_id)}`);
    expect(byClient).toHaveLength(1);
    expect(byClient[0]).toContain('Connections Client');
    const byAlice = await rows(`user=${aliceId}`);
    expect(byAlice.length).toBeGreaterThan(1);
    expect(byAlice.every((r) => r.includes('<td>alice@example.com</td>'))).toBe(true);
    expect(byAlice.some((r) => r.includes(client.client_id))).toBe(true);
    const byBob = await rows(`user=${await userId('bob@example.com')}`);
    expect(byBob.length).toBeGreaterThan(0);
    expect(byBob.every((r) => r.includes('<td>bob@example.com</td>') && !r.includes(client.client_id))).toBe(true);
    expect(await rows(`client=${encodeURIComponent(client.client_id)}&user=${await userId('bob@example.com')}`)).toEqual([]);
    expect(await (await admin.get('/connections?client=no-such-client')).text()).toContain('No connections match.');
  });

  test('revoke: the refresh token fails, the grant and its tokens are gone, and it is audited', async () => {
    const html = await (await admin.get(`/connections?user=${aliceId}`)).text();
    const grantId = grantIdIn(html, client.client_id);
    const response = await admin.post(`/connections/${grantId}/revoke`, { user: aliceId });
    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toBe(`/connections?user=${aliceId}&revoked=1`);
    const after = await (await admin.get(response.headers.get('location')!)).text();
    expect(after).toContain('Connection revoked');
    expect(connectionRows(after).some((r) => r.includes(client.client_id))).toBe(false);

    const refreshed = await refresh(client, refreshToken);
    expect(refreshed.status).toBe(400);
    expect(refreshed.body.error).toBe('invalid_grant');
    const left = await app.db
      .selectFrom('oidc_payloads')
      .select('model')
      .where((eb) => eb.or([eb('id', '=', grantId), eb('grant_id', '=', grantId)]))
      .where('model', 'in', ['Grant', 'RefreshToken', 'AuthorizationCode'])
      .execute();
    expect(left).toEqual([]);
    expect(await lastEvent('grant.revoked')).toMatchObject({
      actor: ACTOR,
      clientId: client.client_id,
      accountId: aliceId,
      resource: RESOURCE,
      details: { grant_id: grantId, resources: { [RESOURCE]: ['files:read', 'files:write'] } },
    });

    // Revoking it again finds nothing; the user simply consents again next time.
    expect((await admin.post(`/connections/${grantId}/revoke`)).status).toBe(404);
    const again = await connect({ email: 'alice@example.com', password: TEST_PASSWORD, client });
    expect(again.pages.some((p) => p.includes('/consent'))).toBe(true);
  });

  test('the audit page shows every console action with the administrator who did it', async () => {
    const html = await (await admin.get('/audit')).text();
    for (const event of ['resource.added', 'resource.updated', 'resource.removed', 'user.created', 'user.disabled', 'user.enabled', 'user.password_reset', 'grant.revoked']) {
      expect(html, event).toContain(`<td><code>${event}</code></td>`);
      expect(html).toContain(`<option value="${event}"`);
    }
    expect(html).toContain(ACTOR);
  });
});
