/**
 * A small, real MCP server for end-to-end tests: the official SDK's `McpServer` behind a stateless
 * `StreamableHTTPServerTransport`, protected the way the MCP authorization spec asks of a resource
 * server (RFC 9728 metadata, `WWW-Authenticate` challenges, JWT access tokens checked for issuer,
 * audience, type and algorithm against the authorization server's JWKS).
 *
 * Its URL, http://127.0.0.1:PORT/mcp, is the resource (RFC 8707) that tokens must be issued for.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js';
import { createRemoteJWKSet, jwtVerify, type JWTPayload } from 'jose';

export const MCP_PATH = '/mcp';
export const WHOAMI_TOOL = 'whoami';

export interface TestMcpServerOptions {
  /** The authorization server's issuer identifier; its JWKS is at `${issuer}/jwks`. */
  issuer: string;
  /** Advertised in the protected-resource metadata and in the 401 challenge. */
  scopes?: string[];
}

export interface TestMcpServer {
  /** The canonical resource URL, e.g. http://127.0.0.1:PORT/mcp. */
  url: string;
  /** The path-suffixed RFC 9728 metadata URL named in the 401 challenge. */
  resourceMetadataUrl: string;
  server: Server;
  /** Every token the server accepted, with its verified claims (newest last). */
  accepted: JWTPayload[];
  close(): Promise<void>;
}

/** What the `whoami` tool answers (also as structured content). */
export interface WhoAmI {
  sub: string;
  client_id: string | undefined;
  scopes: string[];
  aud: string | string[] | undefined;
}

function buildMcpServer(): McpServer {
  const server = new McpServer({ name: 'gatehouse-test-mcp', version: '1.0.0' });
  server.registerTool(
    WHOAMI_TOOL,
    { title: 'Who am I?', description: 'Returns the subject and scopes of the access token used for this call.' },
    async (extra) => {
      const auth = extra.authInfo;
      const claims = (auth?.extra?.claims ?? {}) as JWTPayload;
      const who: WhoAmI = {
        sub: String(claims.sub),
        client_id: auth?.clientId,
        scopes: auth?.scopes ?? [],
        aud: claims.aud,
      };
      return {
        content: [{ type: 'text', text: JSON.stringify(who) }],
        structuredContent: { ...who },
      };
    },
  );
  return server;
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers });
  res.end(JSON.stringify(body));
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export async function startMcpServer(options: TestMcpServerOptions): Promise<TestMcpServer> {
  const issuer = options.issuer;
  const scopes = options.scopes ?? [];
  const jwks = createRemoteJWKSet(new URL(`${issuer}/jwks`));
  const accepted: JWTPayload[] = [];

  let url = '';
  let resourceMetadataUrl = '';
  const metadata = () => ({
    resource: url,
    authorization_servers: [issuer],
    scopes_supported: scopes,
    bearer_methods_supported: ['header'],
    resource_name: 'Gatehouse test MCP server',
  });

  /** RFC 6750 §3 / RFC 9728 §5.1 challenge. */
  const challenge = (extra: Record<string, string> = {}) => {
    const params: Record<string, string> = { resource_metadata: resourceMetadataUrl, ...extra };
    if (scopes.length && !params.scope) params.scope = scopes.join(' ');
    return `Bearer ${Object.entries(params)
      .map(([k, v]) => `${k}="${v.replace(/["\\]/g, '')}"`)
      .join(', ')}`;
  };

  async function authenticate(req: IncomingMessage, res: ServerResponse): Promise<AuthInfo | undefined> {
    const header = req.headers.authorization;
    const match = header ? /^Bearer ([A-Za-z0-9\-._~+/]+=*)$/i.exec(header) : null;
    if (!match) {
      sendJson(res, 401, { error: 'invalid_token', error_description: 'a bearer token is required' }, { 'www-authenticate': challenge() });
      return undefined;
    }
    const token = match[1]!;
    try {
      const { payload } = await jwtVerify(token, jwks, {
        issuer,
        audience: url,
        typ: 'at+jwt',
        algorithms: ['ES256'],
        requiredClaims: ['sub', 'exp', 'iat', 'client_id'],
      });
      accepted.push(payload);
      return {
        token,
        clientId: String(payload.client_id),
        scopes: typeof payload.scope === 'string' ? payload.scope.split(' ').filter(Boolean) : [],
        ...(typeof payload.exp === 'number' ? { expiresAt: payload.exp } : {}),
        resource: new URL(url),
        extra: { claims: payload },
      };
    } catch (err) {
      const description = err instanceof Error ? err.message : 'invalid token';
      sendJson(res, 401, { error: 'invalid_token', error_description: description }, {
        'www-authenticate': challenge({ error: 'invalid_token', error_description: description }),
      });
      return undefined;
    }
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://placeholder').pathname;

    if (path === `/.well-known/oauth-protected-resource${MCP_PATH}` || path === '/.well-known/oauth-protected-resource') {
      if (req.method !== 'GET') return sendJson(res, 405, { error: 'method not allowed' }, { allow: 'GET' });
      return sendJson(res, 200, metadata(), { 'access-control-allow-origin': '*' });
    }

    if (path !== MCP_PATH) return sendJson(res, 404, { error: 'not found' });

    // Every request to the MCP endpoint carries a valid token, before anything else is looked at.
    const auth = await authenticate(req, res);
    if (!auth) return;

    if (req.method !== 'POST') {
      // Stateless: no standalone SSE stream and no session to delete.
      return sendJson(res, 405, { jsonrpc: '2.0', error: { code: -32000, message: 'Method not allowed.' }, id: null }, { allow: 'POST' });
    }

    let body: unknown;
    try {
      body = JSON.parse(await readBody(req));
    } catch {
      return sendJson(res, 400, { jsonrpc: '2.0', error: { code: -32700, message: 'Parse error' }, id: null });
    }

    const mcp = buildMcpServer();
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    res.on('close', () => {
      void transport.close();
      void mcp.close();
    });
    await mcp.connect(transport);
    await transport.handleRequest(Object.assign(req, { auth }), res, body);
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { error: 'server_error', error_description: String(err) });
      else res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  url = `http://127.0.0.1:${port}${MCP_PATH}`;
  resourceMetadataUrl = `http://127.0.0.1:${port}/.well-known/oauth-protected-resource${MCP_PATH}`;

  return {
    url,
    resourceMetadataUrl,
    server,
    accepted,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Registers a test MCP server at Gatehouse as a resource with one scope (the default). */
export async function registerMcpResource(
  app: { resources: { add: (input: { uri: string; name: string; scopes: { name: string; description: string }[]; defaultScopes: string[]; accessTokenTtl: number }) => Promise<unknown> } },
  mcp: TestMcpServer,
  scope: string,
): Promise<void> {
  await app.resources.add({
    uri: mcp.url,
    name: 'Test MCP server',
    scopes: [{ name: scope, description: 'Use the tools of the test MCP server' }],
    defaultScopes: [scope],
    accessTokenTtl: 600,
  });
}
