/**
 * A small MCP server protected by Gatehouse: the official MCP SDK (Streamable HTTP, stateless) and
 * `gatehouse/resource-server`. Two tools with different scopes:
 *
 * - `read_notes`  needs `notes:read`;
 * - `write_note`  needs `notes:write` as well. A token without it gets 403 `insufficient_scope`
 *   naming both scopes, so the client can ask the user for more (step-up authorization).
 *
 * Every scope, and which scope includes which, comes from Gatehouse's registry entry for this
 * server (`gatehouse resource add`): nothing here repeats it but the tool-to-scope policy.
 *
 * Run it (see README.md next to this file):
 *   GATEHOUSE_ISSUER=http://localhost:4000 npm run example:mcp-server
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { z } from 'zod';
import { createResourceServer, requiredScopesForMcpMessage, type McpScopePolicy } from 'gatehouse/resource-server';

/** Which scopes each request needs. */
export const SCOPE_POLICY: McpScopePolicy = {
  base: ['notes:read'],
  tools: { write_note: ['notes:write'] },
};

export interface NotesServerOptions {
  /** Gatehouse's issuer, e.g. http://localhost:4000. */
  issuer: string;
  /** Default 3000; 0 picks a free port. */
  port?: number;
  host?: string;
  /** This server's resource URI as registered at Gatehouse. Default http://localhost:PORT/mcp. */
  resource?: string;
}

export interface NotesServer {
  url: string;
  server: Server;
  close(): Promise<void>;
}

/** The MCP server itself: notes kept in memory, per user (the token's subject). */
function buildMcpServer(notes: Map<string, string[]>): McpServer {
  const mcp = new McpServer({ name: 'gatehouse-example-notes', version: '1.0.0' });
  const userOf = (extra: { authInfo?: { extra?: Record<string, unknown> } }) => String(extra.authInfo?.extra?.subject);
  mcp.registerTool('read_notes', { title: 'Read notes', description: 'Lists your notes.' }, async (extra) => {
    const mine = notes.get(userOf(extra)) ?? [];
    return { content: [{ type: 'text', text: mine.length ? mine.map((n, i) => `${i + 1}. ${n}`).join('\n') : 'No notes yet.' }] };
  });
  mcp.registerTool(
    'write_note',
    { title: 'Write a note', description: 'Adds a note.', inputSchema: { text: z.string().min(1).max(1000) } },
    async ({ text }, extra) => {
      const user = userOf(extra);
      notes.set(user, [...(notes.get(user) ?? []), text]);
      return { content: [{ type: 'text', text: `Saved note ${notes.get(user)!.length}.` }] };
    },
  );
  return mcp;
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > 1024 * 1024) throw new Error('request too large');
    chunks.push(chunk as Buffer);
  }
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

export async function startNotesServer(options: NotesServerOptions): Promise<NotesServer> {
  const notes = new Map<string, string[]>();
  const host = options.host ?? '127.0.0.1';
  let resource = options.resource ?? '';
  let rs: ReturnType<typeof createResourceServer> | undefined;

  const server = createServer(async (req, res) => {
    try {
      // RFC 9728 metadata, read from Gatehouse's registry.
      if (await rs!.serveMetadata(req, res)) return;
      if (new URL(req.url ?? '/', resource).pathname !== new URL(resource).pathname) {
        res.writeHead(404).end();
        return;
      }
      if (req.method !== 'POST') {
        // Stateless server: no SSE stream to resume, no session to delete.
        res.writeHead(405, { Allow: 'POST' }).end();
        return;
      }
      let message: unknown;
      try {
        message = await readJson(req);
      } catch {
        res.writeHead(400, { 'Content-Type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32700, message: 'Parse error' } }));
        return;
      }
      // The scopes this very message needs: a 401 or 403 names all of them at once.
      const token = await rs!.authenticate(req, res, { scopes: requiredScopesForMcpMessage(message, SCOPE_POLICY) });
      if (!token) return;
      const mcp = buildMcpServer(notes);
      const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
      res.on('close', () => void transport.close().then(() => mcp.close()));
      await mcp.connect(transport);
      await transport.handleRequest(req, res, message); // req.auth was set by authenticate()
    } catch (err) {
      console.error(err);
      if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'application/json' }).end(JSON.stringify({ error: 'server_error' }));
    }
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 3000, host, resolve);
  });
  const port = (server.address() as AddressInfo).port;
  resource ||= `http://localhost:${port}/mcp`;
  rs = createResourceServer({ issuer: options.issuer, resource });
  return {
    url: resource,
    server,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

// `npm run example:mcp-server`
if (import.meta.url === `file://${process.argv[1]}`) {
  const issuer = process.env.GATEHOUSE_ISSUER ?? 'http://localhost:4000';
  const port = Number(process.env.PORT ?? 3000);
  const running = await startNotesServer({ issuer, port, resource: process.env.MCP_RESOURCE });
  console.log(`Notes MCP server at ${running.url}, protected by ${issuer}`);
  console.log(`Metadata: ${new URL('/.well-known/oauth-protected-resource/mcp', running.url).href}`);
}
