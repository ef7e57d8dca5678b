/**
 * What the user is shown is what it is.
 * - Client names that display as something else (issue 15 §5, Unicode TR #36 §2): "Acme
 *   \u202Egnp.exe" shows as "Acme exe.png". Bidirectional overrides and isolates, zero-width
 *   characters and C1 controls are refused at registration and in metadata documents with
 *   invalid_client_metadata, and nothing is stored; every page shows the client's name isolated
 *   (`<bdi>`), so what is allowed cannot reorder the text around it.
 * - Redirect destinations (issue 15 §4): a private-use redirect is an application on this computer,
 *   never the "host" its URI names, with the same warning as loopback.
 */
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { seed, startTestApp, type TestApp } from '../support/app.ts';
import { startDocumentServer, TEST_DOCUMENT_TRUST, type DocumentServer } from '../support/document-server.ts';
import { authorizationUrl, authorizeInBrowser, browse, codeAuthorizationUrl, CookieJar, pkcePair, REDIRECT_URI, registerClient } from '../support/oauth.ts';

const RESOURCE = 'https://mcp.example.com';
let app: TestApp;
let documents: DocumentServer;

beforeAll(async () => {
  documents = await startDocumentServer();
  app = await startTestApp({ env: { GATEHOUSE_CLIENT_APPROVAL: 'manual' }, testOnly: { documentFetchTrust: TEST_DOCUMENT_TRUST } });
  await seed(app, { uri: RESOURCE });
});
afterAll(async () => {
  await app?.close();
  await documents?.close();
});

const DECEPTIVE: [string, string][] = [
  ['a right-to-left override (U+202E)', 'Acme \u202Egnp.exe'],
  ['a left-to-right embedding (U+202A)', 'Acme \u202Aname'],
  ['a pop directional formatting (U+202C)', 'Acme \u202Cname'],
  ['a right-to-left isolate (U+2067)', 'Acme \u2067name\u2069'],
  ['a first-strong isolate (U+2068)', 'Acme \u2068name'],
  ['a right-to-left mark (U+200F)', 'Acme\u200F'],
  ['a zero-width space (U+200B)', 'Cla\u200Bude'],
  ['a word joiner (U+2060)', 'Cla\u2060ude'],
  ['a byte-order mark (U+FEFF)', '\uFEFFClaude'],
  ['a C1 control (U+0085)', 'Claude\u0085'],
  ['an Arabic letter mark (U+061C)', 'Claude\u061C'],
];

describe('registration (RFC 7591)', () => {
  test.each(DECEPTIVE)('a client_name with %s is invalid_client_metadata, and nothing is stored', async (_what, name) => {
    const before = await app.db.selectFrom('clients').select('client_id').execute();
    const response = await request(app.issuer).post('/register').send({ client_name: name, redirect_uris: [REDIRECT_URI], token_endpoint_auth_method: 'none' });
    expect(response.status).toBe(400);
    expect(response.body.error).toBe('invalid_client_metadata');
    expect(response.body.error_description).toMatch(/invisible or reordering characters/);
    expect(await app.db.selectFrom('clients').select('client_id').execute()).toHaveLength(before.length);
  });

  test.each([
    ['Persian with a zero-width non-joiner', 'می\u200Cخواهم'],
    ['an emoji sequence with a zero-width joiner', 'Dev \u{1F468}\u200D\u{1F4BB} Tool'],
    ['right-to-left text on its own', 'עוזר MCP'],
  ])('%s is a name like any other', async (_what, name) => {
    const client = await registerClient(app.issuer, { client_name: name });
    expect(client.client_name).toBe(name);
  });
});

describe('metadata documents (CIMD)', () => {
  test('a document whose client_name reorders text is refused with invalid_client, never cached', async () => {
    const path = '/clients/deceptive/metadata.json';
    const clientId = documents.url(path);
    documents.serve(path, { body: { client_id: clientId, client_name: 'Acme \u202Egnp.exe', redirect_uris: [REDIRECT_URI] } });
    const response = await request(app.issuer)
      .get('/authorize')
      .query({ client_id: clientId, response_type: 'code', redirect_uri: REDIRECT_URI, code_challenge: pkcePair().challenge, code_challenge_method: 'S256', resource: RESOURCE });
    expect(response.status).toBe(400);
    expect(response.headers.location).toBeUndefined();
    expect(response.text).toContain('invalid_client');
    expect(response.text).toMatch(/invisible or reordering characters/);
    expect(await app.db.selectFrom('client_metadata_documents').select('client_id').where('client_id', '=', clientId).execute()).toEqual([]);
    expect(await app.db.selectFrom('clients').select('client_id').where('client_id', '=', clientId).execute()).toEqual([]);
  });
});

test('pages show a client-supplied name isolated, so it cannot reorder the sentence around it', async () => {
  const client = await registerClient(app.issuer, { client_name: 'עוזר MCP' });
  const jar = new CookieJar();
  let response = await browse(
    jar,
    codeAuthorizationUrl(app.issuer, client, { resource: RESOURCE }),
  );
  while (response.status === 303 || response.status === 302) response = await browse(jar, new URL(response.headers.get('location')!, app.issuer));
  const html = await response.text();
  expect(html).toContain('<bdi><strong>עוזר MCP</strong></bdi> is waiting for approval');
});

describe('honest redirect destinations (issue 15 §4)', () => {
  const URI = 'com.example.app://claude.ai/api/mcp/auth_callback';

  test('a private-use redirect is "an application on this computer", never the host its URI names, with the local warning', async () => {
    const client = await registerClient(app.issuer, { client_name: 'Private-use app', redirect_uris: [URI] });
    const start = () =>
      authorizationUrl(app.issuer, {
        client_id: client.client_id,
        response_type: 'code',
        redirect_uri: URI,
        code_challenge: pkcePair().challenge,
        code_challenge_method: 'S256',
        resource: RESOURCE,
      });
    // The waiting page, while it is pending.
    const jar = new CookieJar();
    let response = await browse(jar, start());
    while (response.status === 303 || response.status === 302) response = await browse(jar, new URL(response.headers.get('location')!, app.issuer));
    const waiting = await response.text();
    expect(waiting).toContain('an application on this computer (scheme com.example.app)');
    expect(waiting).not.toContain('<code>claude.ai</code>');

    // The consent page, once approved.
    await app.clients.approve(client.client_id, [{ resource: RESOURCE, scopes: ['files:read'] }], 'admin@example.com');
    const { pages } = await authorizeInBrowser(start());
    const consent = pages.find((html) => html.includes('Allow access?'))!;
    expect(consent).toContain('<code>an application on this computer (scheme com.example.app)</code>');
    expect(consent).toContain('This application receives the answer on your own computer');
    expect(consent).not.toContain('<code>claude.ai</code>');
  });
});
