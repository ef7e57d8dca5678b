/**
 * Step-up authorization end to end (issue 5): the official MCP SDK client against
 * examples/mcp-server (protected by `gatehouse/resource-server`) and a running Gatehouse.
 *
 * The client signs in with what the server asks for first (`notes:read`), reads, then calls the
 * write tool: 403 `insufficient_scope` naming `notes:read notes:write`. It authorizes again for the
 * union, the user consents to the new scope only, and the write succeeds.
 *
 * SDK 1.32.2's built-in upscoping first tries its refresh token, which cannot widen a grant (RFC 6749
 * §6: a refresh may only narrow scope), so it gives up with "Server returned 403 after trying
 * upscoping"; the client then drops its tokens and retries, and the SDK asks for the union.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport, StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { startNotesServer, type NotesServer } from '../../examples/mcp-server/server.ts';
import { seed, startTestApp, TEST_PASSWORD, type TestApp } from '../support/app.ts';
import { InMemoryOAuthProvider } from '../support/mcp-client.ts';
import { authorizeInBrowser, obtainTokens, REDIRECT_URI } from '../support/oauth.ts';

const EMAIL = 'stepper@example.com';

class HeadlessProvider extends InMemoryOAuthProvider {
  code: string | undefined;
  pages: string[][] = [];
  constructor() {
    super(REDIRECT_URI, 'Step-up e2e (MCP SDK)');
  }
  async redirectToAuthorization(url: URL): Promise<void> {
    this.authorizationUrls.push(url);
    const { callback, pages } = await authorizeInBrowser(url, { email: EMAIL, password: TEST_PASSWORD });
    this.pages.push(pages);
    this.code = callback.searchParams.get('code') ?? undefined;
    if (!this.code) throw new Error(`no code: ${callback}`);
  }
}

let app: TestApp;
let notes: NotesServer;

beforeAll(async () => {
  app = await startTestApp();
  notes = await startNotesServer({ issuer: app.issuer, port: 0 });
  await app.resources.add({
    uri: notes.url,
    name: 'Notes',
    scopes: [
      { name: 'notes:read', description: 'Read your notes' },
      { name: 'notes:write', description: 'Add notes' },
    ],
    defaultScopes: ['notes:read'],
    accessTokenTtl: 600,
  });
  await app.accounts.create(EMAIL, TEST_PASSWORD);
});
afterAll(async () => {
  await notes?.close();
  await app?.close();
});

interface Seen {
  status: number;
  headers: Headers;
}

/** A connected client; when the SDK had to send the user to Gatehouse first, finishes that and connects again. */
async function connect(provider: HeadlessProvider, seen: Seen[]): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const fetchFn = async (input: string | URL | Request, init?: RequestInit) => {
    const response = await fetch(input, init);
    seen.push({ status: response.status, headers: response.headers });
    return response;
  };
  for (let attempt = 0; ; attempt++) {
    const transport = new StreamableHTTPClientTransport(new URL(notes.url), { authProvider: provider, fetch: fetchFn });
    const client = new Client({ name: 'step-up-e2e', version: '1.0.0' });
    try {
      await client.connect(transport);
      return { client, transport };
    } catch (err) {
      await client.close();
      if (!(err instanceof UnauthorizedError) || attempt > 0) throw err;
      // The SDK sent the user to Gatehouse (the headless browser consented): finish with the code.
      await transport.finishAuth(provider.code!);
    }
  }
}

const text = (result: unknown) => ((result as { content: Array<{ text: string }> }).content)[0]!.text;

test('read with notes:read; the write tool asks for notes:read notes:write; after consenting to more, the write succeeds', async () => {
  const provider = new HeadlessProvider();
  const seen: Seen[] = [];
  const metadataUrl = new URL('/.well-known/oauth-protected-resource/mcp', notes.url).href;

  // 1. First contact: 401 names the base scope; the user signs in and consents to notes:read only.
  const { client, transport } = await connect(provider, seen);
  try {
    expect(seen.find((r) => r.status === 401)!.headers.get('www-authenticate')).toBe(`Bearer resource_metadata="${metadataUrl}", scope="notes:read"`);
    expect(provider.authorizationUrls[0]!.searchParams.get('scope')).toBe('notes:read');
    expect(decodeJwt(provider.storedTokens!.access_token).scope).toBe('notes:read');
    expect(text(await client.callTool({ name: 'read_notes', arguments: {} }))).toBe('No notes yet.');

    // 2. The write tool with a read-only token: 403 insufficient_scope naming every scope it needs.
    //    The SDK's own upscoping refreshes first, which cannot widen the grant, and gives up.
    seen.length = 0;
    const refused = await client.callTool({ name: 'write_note', arguments: { text: 'buy milk' } }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(StreamableHTTPError);
    expect((refused as StreamableHTTPError).code).toBe(403);
    const forbidden = seen.filter((r) => r.status === 403);
    expect(forbidden).toHaveLength(2); // before and after the SDK's refresh
    expect(forbidden[0]!.headers.get('www-authenticate')).toBe(
      `Bearer error="insufficient_scope", error_description="this needs the scopes notes:read notes:write", scope="notes:read notes:write", resource_metadata="${metadataUrl}"`,
    );
    expect(decodeJwt(provider.storedTokens!.access_token).scope).toBe('notes:read');
    expect(text(await client.callTool({ name: 'read_notes', arguments: {} }))).toBe('No notes yet.');

    // 3. The client drops its read-only tokens and calls again: the 401 for this call names the
    //    union, the SDK sends the user to Gatehouse for it, and the user consents to the new scope.
    provider.invalidateCredentials('tokens');
    seen.length = 0;
    await expect(client.callTool({ name: 'write_note', arguments: { text: 'buy milk' } })).rejects.toBeInstanceOf(UnauthorizedError);
    expect(seen[0]).toMatchObject({ status: 401 });
    expect(seen[0]!.headers.get('www-authenticate')).toBe(`Bearer resource_metadata="${metadataUrl}", scope="notes:read notes:write"`);
    const stepUp = provider.authorizationUrls.at(-1)!;
    expect(stepUp.searchParams.get('scope')).toBe('notes:read notes:write');
    expect(stepUp.searchParams.get('resource')).toBe(notes.url);
    const consent = provider.pages.at(-1)!.join('\n');
    expect(consent).toContain('Add notes');
    await transport.finishAuth(provider.code!);
    expect(decodeJwt(provider.storedTokens!.access_token).scope).toBe('notes:read notes:write');

    const written = await client.callTool({ name: 'write_note', arguments: { text: 'buy milk' } });
    expect(text(written)).toBe('Saved note 1.');
    // 4. And the note is there for the same user.
    expect(text(await client.callTool({ name: 'read_notes', arguments: {} }))).toBe('1. buy milk');
  } finally {
    await client.close();
  }
});

test('the example server answers RFC 9728 metadata from Gatehouse\'s registry, and refuses another server\'s token', async () => {
  const metadata = await (await fetch(new URL('/.well-known/oauth-protected-resource/mcp', notes.url))).json();
  expect(metadata).toEqual({
    resource: notes.url,
    authorization_servers: [app.issuer],
    scopes_supported: ['notes:read', 'notes:write'],
    bearer_methods_supported: ['header'],
    resource_name: 'Notes',
  });

  await seed(app); // https://mcp.example.com and its user
  const { tokens } = await obtainTokens(app.issuer, { resource: 'https://mcp.example.com' });
  const response = await fetch(notes.url, {
    method: 'POST',
    headers: { authorization: `Bearer ${tokens.body.access_token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'read_notes', arguments: {} } }),
  });
  expect(response.status).toBe(401);
  expect(response.headers.get('www-authenticate')).toMatch(/^Bearer error="invalid_token", error_description="the access token is for another resource/);
});
