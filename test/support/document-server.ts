/**
 * A local https server that plays the part of MCP client vendors' websites: it serves Client ID
 * Metadata Documents (and whatever else a test needs) with the test certificate in
 * test/fixtures/tls. Gatehouse trusts it only through the test-only `documentFetchTrust`.
 */
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';

const TLS_DIR = new URL('../fixtures/tls/', import.meta.url);
export const TEST_CA = readFileSync(new URL('ca.pem', TLS_DIR), 'utf8');
/** The trust a test app needs to fetch from {@link startDocumentServer}. */
export const TEST_DOCUMENT_TRUST = { ca: TEST_CA, allowLoopback: true };

export interface Route {
  status?: number;
  headers?: Record<string, string>;
  /** An object is sent as JSON; a string or Buffer as is. */
  body?: unknown;
  /** Wait this long before answering. */
  delayMs?: number;
}

export interface DocumentServer {
  origin: string;
  /** `https://localhost:PORT${path}` */
  url(path: string): string;
  serve(path: string, route: Route): void;
  /** How many requests each path received. */
  hits(path: string): number;
  /** Headers of the last request to a path. */
  lastRequestHeaders(path: string): Record<string, string | string[] | undefined> | undefined;
  close(): Promise<void>;
}

export async function startDocumentServer(): Promise<DocumentServer> {
  const routes = new Map<string, Route>();
  const hits = new Map<string, number>();
  const headers = new Map<string, Record<string, string | string[] | undefined>>();
  const server: Server = createServer(
    { cert: readFileSync(new URL('server.pem', TLS_DIR)), key: readFileSync(new URL('server-key.pem', TLS_DIR)) },
    (req, res) => {
      const path = (req.url ?? '/').split('?')[0]!;
      hits.set(path, (hits.get(path) ?? 0) + 1);
      headers.set(path, req.headers);
      const route = routes.get(path);
      const answer = () => {
        if (!route) {
          res.statusCode = 404;
          res.end('not found');
          return;
        }
        res.statusCode = route.status ?? 200;
        const isJson = route.body !== undefined && typeof route.body !== 'string' && !Buffer.isBuffer(route.body);
        if (isJson) res.setHeader('content-type', 'application/json');
        for (const [k, v] of Object.entries(route.headers ?? {})) res.setHeader(k, v);
        res.end(isJson ? JSON.stringify(route.body) : (route.body as string | Buffer | undefined));
      };
      if (route?.delayMs) setTimeout(answer, route.delayMs).unref();
      else answer();
    },
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const origin = `https://localhost:${port}`;
  return {
    origin,
    url: (path) => `${origin}${path}`,
    serve: (path, route) => void routes.set(path, route),
    hits: (path) => hits.get(path) ?? 0,
    lastRequestHeaders: (path) => headers.get(path),
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
