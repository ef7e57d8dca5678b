/**
 * The resource registry as resource servers read it: each registered MCP server's RFC 9728
 * metadata document, served by Gatehouse at /resources/{id}/protected-resource-metadata (by id or
 * by percent-encoded URI, in any spelling), and the scope hierarchy (`includes`) that the admin API
 * and the service accept, refuse, audit and publish.
 */
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createApiTokens } from '../../src/admin/api-tokens.ts';
import { ResourceInputError } from '../../src/resources/resources.service.ts';
import { createAdmin } from '../support/admin.ts';
import { seed, startTestApp, type TestApp } from '../support/app.ts';
import { obtainTokens } from '../support/oauth.ts';

const FILES = 'https://mcp.example.com';
const NOTES = 'https://notes.example.com/mcp';
const NOTES_SCOPES = [
  { name: 'notes:read', description: 'Read your notes' },
  { name: 'notes:write', description: 'Change your notes' },
  { name: 'notes:admin', description: 'Administer your notes', includes: ['notes:read', 'notes:write'] },
];

let app: TestApp;
let token: string;
let notesId: string;

beforeAll(async () => {
  app = await startTestApp();
  await seed(app, { uri: FILES });
  const notes = await app.resources.add({ uri: NOTES, name: 'Notes', scopes: NOTES_SCOPES, defaultScopes: ['notes:read'], accessTokenTtl: 600 });
  notesId = notes.id;
  const admin = await createAdmin(app);
  ({ token } = await createApiTokens(app.db).create(admin.id, 'registry test'));
});
afterAll(() => app?.close());

const metadataUrl = (id: string) => `${app.issuer}/resources/${id}/protected-resource-metadata`;
const getMetadata = (id: string, init: RequestInit = {}) => fetch(metadataUrl(id), { redirect: 'manual', ...init });

function api(path: string, init: { method?: string; body?: unknown } = {}) {
  const headers: Record<string, string> = { accept: 'application/json', authorization: `Bearer ${token}` };
  if (init.body !== undefined) headers['content-type'] = 'application/json';
  return fetch(`${app.adminUrl}/api/v1${path}`, { method: init.method ?? 'GET', headers, body: init.body === undefined ? undefined : JSON.stringify(init.body) });
}

/** The resources table and the number of audit events: to prove a refused change changed nothing. */
const snapshot = async () =>
  JSON.stringify({
    resources: await app.db.selectFrom('resources').selectAll().orderBy('uri').execute(),
    events: (await app.db.selectFrom('audit_events').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()).n,
  });

const notesDocument = () => ({
  resource: NOTES,
  authorization_servers: [app.config.issuer],
  scopes_supported: ['notes:read', 'notes:write', 'notes:admin'],
  bearer_methods_supported: ['header'],
  resource_name: 'Notes',
  scope_descriptions: { 'notes:read': 'Read your notes', 'notes:write': 'Change your notes', 'notes:admin': 'Administer your notes' },
  scope_includes: { 'notes:admin': ['notes:read', 'notes:write'] },
  default_scopes: ['notes:read'],
  access_token_ttl: 600,
});

describe('GET /resources/{id}/protected-resource-metadata', () => {
  test('by the resource id: the exact document, public and cacheable, with the usual security headers', async () => {
    const response = await getMetadata(notesId);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual(notesDocument());
    expect(response.headers.get('content-type')).toMatch(/^application\/json(;|$)/);
    expect(response.headers.get('cache-control')).toBe('public, max-age=60');
    expect(response.headers.get('access-control-allow-origin')).toBe('*');
    expect(response.headers.get('x-content-type-options')).toBe('nosniff');
    expect(response.headers.get('x-frame-options')).toBe('DENY');
    expect(response.headers.get('content-security-policy')).toContain("default-src 'none'");
    expect(response.headers.get('x-request-id')).toBeTruthy();
    // No session, no cookie: nothing of the provider's.
    expect(response.headers.get('set-cookie')).toBeNull();
    expect(app.config.issuer).toBe(app.issuer);
  });

  test('by the percent-encoded URI, in the canonical or any other spelling, answers the canonical resource', async () => {
    for (const spelling of [NOTES, 'https://NOTES.Example.COM/mcp', 'HTTPS://notes.example.com:443/mcp']) {
      const response = await getMetadata(encodeURIComponent(spelling));
      expect(response.status, spelling).toBe(200);
      expect(await response.json(), spelling).toEqual(notesDocument());
    }
    const files = await getMetadata(encodeURIComponent('https://MCP.example.com/'));
    expect(files.status).toBe(200);
    expect(await files.json()).toEqual({
      resource: FILES,
      authorization_servers: [app.issuer],
      scopes_supported: ['files:read', 'files:write'],
      bearer_methods_supported: ['header'],
      resource_name: 'Example MCP',
      scope_descriptions: { 'files:read': 'Read your files', 'files:write': 'Change your files' },
      scope_includes: {},
      default_scopes: ['files:read'],
      access_token_ttl: 600,
    });
  });

  test('an unknown id or URI is a 404 invalid_target that is not cached', async () => {
    for (const [id, named] of [
      ['00000000-0000-0000-0000-000000000000', '00000000-0000-0000-0000-000000000000'],
      [encodeURIComponent('https://unknown.example.com'), 'https://unknown.example.com'],
      // Another path is another resource (RFC 8707 §2: /mcp/ is not /mcp).
      [encodeURIComponent(`${NOTES}/`), `${NOTES}/`],
      ['not-a-uri', 'not-a-uri'],
      [encodeURIComponent('javascript:alert(1)'), 'javascript:alert(1)'],
    ] as const) {
      const response = await getMetadata(id);
      expect(response.status, id).toBe(404);
      expect(await response.json(), id).toEqual({ error: 'invalid_target', error_description: `no MCP server ${named} is registered with Gatehouse` });
      expect(response.headers.get('cache-control'), id).toBe('no-store');
      expect(response.headers.get('content-type'), id).toMatch(/^application\/json/);
      expect(response.headers.get('access-control-allow-origin'), id).toBe('*');
    }
    // A malformed percent-encoding is just an unknown name, not a failure.
    const malformed = await getMetadata('%E0%A4%A');
    expect(malformed.status).toBe(404);
    expect(((await malformed.json()) as { error: string }).error).toBe('invalid_target');
  });

  test('it is read-only: other methods are a 405 with Allow; HEAD answers the headers; a CORS preflight is allowed', async () => {
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
      const response = await getMetadata(notesId, { method, headers: { 'content-type': 'application/json' }, body: method === 'DELETE' ? undefined : '{}' });
      expect(response.status, method).toBe(405);
      expect(response.headers.get('allow'), method).toBe('GET, HEAD, OPTIONS');
      expect(response.headers.get('cache-control'), method).toBe('no-store');
    }
    const head = await getMetadata(notesId, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('cache-control')).toBe('public, max-age=60');
    expect(await head.text()).toBe('');

    const preflight = await getMetadata(encodeURIComponent(NOTES), {
      method: 'OPTIONS',
      headers: { origin: 'https://inspector.example', 'access-control-request-method': 'GET', 'access-control-request-headers': 'mcp-protocol-version' },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe('*');
    expect(preflight.headers.get('access-control-allow-methods')).toBe('GET, HEAD');
    expect(preflight.headers.get('access-control-allow-headers')).toBe('mcp-protocol-version');
  });

  test('a change through the admin API or the service shows at once', async () => {
    const edited = await api(`/resources?uri=${encodeURIComponent(NOTES)}`, {
      method: 'PUT',
      body: {
        name: 'Notes v2',
        scopes: [
          { name: 'notes:read', description: 'Read your notes' },
          { name: 'notes:write', description: 'Change your notes', includes: ['notes:read'] },
          { name: 'notes:admin', description: 'Administer your notes', includes: ['notes:write'] },
        ],
      },
    });
    expect(edited.status).toBe(200);
    expect(await (await getMetadata(notesId)).json()).toEqual({
      ...notesDocument(),
      resource_name: 'Notes v2',
      scope_includes: { 'notes:write': ['notes:read'], 'notes:admin': ['notes:write'] },
    });

    await app.resources.edit(NOTES, { name: 'Notes', scopes: NOTES_SCOPES, defaultScopes: ['notes:read', 'notes:write'], accessTokenTtl: 300 });
    expect(await (await getMetadata(encodeURIComponent(NOTES))).json()).toEqual({ ...notesDocument(), default_scopes: ['notes:read', 'notes:write'], access_token_ttl: 300 });
    await app.resources.edit(NOTES, { defaultScopes: ['notes:read'], accessTokenTtl: 600 });

    // A removed MCP server's document is gone at once too.
    const gone = await app.resources.add({ uri: 'https://gone.example.com', name: 'Gone', scopes: [{ name: 'x', description: 'X' }], accessTokenTtl: 600 });
    expect((await getMetadata(gone.id)).status).toBe(200);
    expect(await app.resources.remove(gone.uri)).toBe(true);
    expect((await getMetadata(gone.id)).status).toBe(404);
  });
});

describe('scope includes', () => {
  const scopes = (admin: string[]) => [
    { name: 'notes:read', description: 'Read your notes' },
    { name: 'notes:write', description: 'Change your notes' },
    { name: 'notes:admin', description: 'Administer your notes', includes: admin },
  ];

  test.each([
    ['a scope the resource does not have', scopes(['notes:read', 'notes:delete']), 'scope "notes:admin" includes "notes:delete", which is not one of the resource\'s scopes'],
    ['itself', scopes(['notes:admin', 'notes:read']), 'scope "notes:admin" includes itself'],
    ['the same scope twice', scopes(['notes:read', 'notes:write', 'notes:read']), 'scope "notes:admin" includes "notes:read" twice'],
    [
      'a scope being removed',
      [NOTES_SCOPES[0]!, NOTES_SCOPES[2]!],
      'scope "notes:write" cannot be removed while scope "notes:admin" includes it: remove it from notes:admin\'s includes as well',
    ],
  ])('including %s is refused with a precise message, by the service and the API, and changes nothing', async (_what, changed, message) => {
    const before = await snapshot();
    await expect(app.resources.edit(NOTES, { scopes: changed })).rejects.toThrow(new ResourceInputError(message));
    const response = await api(`/resources?uri=${encodeURIComponent(NOTES)}`, { method: 'PUT', body: { scopes: changed } });
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({ error: 'invalid_request', error_description: message });
    expect(await snapshot()).toBe(before);
    expect(await (await getMetadata(notesId)).json()).toEqual(notesDocument());
  });

  test('adding a resource checks includes the same way', async () => {
    const before = await snapshot();
    const response = await api('/resources', {
      method: 'POST',
      body: { uri: 'https://new.example.com', name: 'New', scopes: [{ name: 'a', description: 'A', includes: ['b', 'a'] }] },
    });
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({
      error: 'invalid_request',
      error_description: 'scope "a" includes "b", which is not one of the resource\'s scopes; scope "a" includes itself',
    });
    for (const includes of ['notes:read', [1], { a: 'b' }]) {
      const wrongShape = await api(`/resources?uri=${encodeURIComponent(NOTES)}`, { method: 'PUT', body: { scopes: [{ name: 'a', description: 'A', includes }] } });
      expect(wrongShape.status, JSON.stringify(includes)).toBe(400);
      expect(await wrongShape.json()).toEqual({ error: 'invalid_request', error_description: 'scopes[0].includes must be an array of scope names' });
    }
    expect(await snapshot()).toBe(before);
  });

  test('a cycle is allowed: it declares equivalent scopes', async () => {
    const cyclic = await app.resources.add({
      uri: 'https://cycle.example.com',
      name: 'Cycle',
      scopes: [
        { name: 'a', description: 'A', includes: ['b'] },
        { name: 'b', description: 'B', includes: ['a'] },
      ],
      accessTokenTtl: 600,
    });
    expect(((await (await getMetadata(cyclic.id)).json()) as { scope_includes: unknown }).scope_includes).toEqual({ a: ['b'], b: ['a'] });
    await app.resources.remove(cyclic.uri);
  });

  test('admin API round trip: added, listed, edited and audited with includes; empty includes are not stored', async () => {
    const uri = 'https://docs.example.com/mcp';
    const created = await api('/resources', {
      method: 'POST',
      body: {
        uri,
        name: 'Docs',
        scopes: [
          { name: 'docs:read', description: 'Read docs', includes: [] },
          { name: 'docs:write', description: 'Write docs' },
          { name: 'docs:admin', description: 'Administer docs', includes: [' docs:read', 'docs:write'] },
        ],
        accessTokenTtl: 300,
      },
    });
    expect(created.status).toBe(201);
    const added = {
      uri,
      scopes: [
        { name: 'docs:read', description: 'Read docs' },
        { name: 'docs:write', description: 'Write docs' },
        { name: 'docs:admin', description: 'Administer docs', includes: ['docs:read', 'docs:write'] },
      ],
    };
    const body = (await created.json()) as typeof added & { id: string };
    expect(body).toMatchObject(added);
    // Exactly these scope objects: no `includes` key on a scope that includes nothing.
    expect(body.scopes).toEqual(added.scopes);
    const [row] = await app.db.selectFrom('resources').select('scopes').where('uri', '=', uri).execute();
    expect(row!.scopes).toEqual(added.scopes);

    const listed = (await (await api('/resources')).json()) as { resources: Array<{ uri: string; scopes: unknown }> };
    expect(listed.resources.find((r) => r.uri === uri)!.scopes).toEqual(added.scopes);

    const edited = await api(`/resources?uri=${encodeURIComponent(uri)}`, {
      method: 'PUT',
      body: { scopes: [added.scopes[0], { ...added.scopes[1], includes: ['docs:read'] }, { name: 'docs:admin', description: 'Administer docs', includes: ['docs:write'] }] },
    });
    expect(edited.status).toBe(200);
    expect(((await edited.json()) as { scopes: unknown }).scopes).toEqual([
      { name: 'docs:read', description: 'Read docs' },
      { name: 'docs:write', description: 'Write docs', includes: ['docs:read'] },
      { name: 'docs:admin', description: 'Administer docs', includes: ['docs:write'] },
    ]);
    const [event] = await app.audit.list({ event: 'resource.updated', limit: 1 });
    expect(event).toMatchObject({
      resource: uri,
      details: {
        added_scopes: [],
        removed_scopes: [],
        scope_includes: { 'docs:write': ['docs:read'], 'docs:admin': ['docs:write'] },
        previous: { scope_includes: { 'docs:admin': ['docs:read', 'docs:write'] } },
      },
    });
    expect(((await (await getMetadata(body.id)).json()) as { scope_includes: unknown }).scope_includes).toEqual({ 'docs:write': ['docs:read'], 'docs:admin': ['docs:write'] });

    // Editing other fields keeps the includes.
    expect((await api(`/resources?uri=${encodeURIComponent(uri)}`, { method: 'PUT', body: { name: 'Docs v2' } })).status).toBe(200);
    expect((await app.resources.resolve(uri))!.scopes[2]).toEqual({ name: 'docs:admin', description: 'Administer docs', includes: ['docs:write'] });
  });

  test('includes change nothing at the authorization server: a token for the broad scope carries only that scope', async () => {
    const discovery = (await (await fetch(`${app.issuer}/.well-known/oauth-authorization-server`)).json()) as { scopes_supported: string[] };
    for (const name of ['notes:read', 'notes:write', 'notes:admin']) expect(discovery.scopes_supported.filter((s) => s === name)).toEqual([name]);
    const { tokens } = await obtainTokens(app.issuer, { resource: NOTES, scope: 'notes:admin' });
    expect(tokens.status).toBe(200);
    expect(tokens.body.scope).toBe('notes:admin');
    expect(decodeJwt(tokens.body.access_token)).toMatchObject({ aud: NOTES, scope: 'notes:admin' });
  });
});
