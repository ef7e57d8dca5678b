/**
 * RFC 9728 protected-resource metadata: the document, where it lives, and a handler that serves it.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

export interface ProtectedResourceMetadata {
  resource: string;
  authorization_servers: string[];
  scopes_supported?: string[];
  bearer_methods_supported: string[];
  resource_name?: string;
  resource_documentation?: string;
  [extension: string]: unknown;
}

export interface ProtectedResourceMetadataOptions {
  /** This MCP server's resource URI, exactly as registered at the authorization server. */
  resource: string;
  /** The authorization server's issuer identifier. */
  issuer: string;
  scopes?: readonly string[];
  resourceName?: string;
  resourceDocumentation?: string;
}

/** The RFC 9728 §2 document. Tokens are accepted in the Authorization header only (RFC 9728 §2, `bearer_methods_supported`). */
export function protectedResourceMetadata(options: ProtectedResourceMetadataOptions): ProtectedResourceMetadata {
  return {
    resource: options.resource,
    authorization_servers: [options.issuer],
    ...(options.scopes ? { scopes_supported: [...options.scopes] } : {}),
    bearer_methods_supported: ['header'],
    ...(options.resourceName ? { resource_name: options.resourceName } : {}),
    ...(options.resourceDocumentation ? { resource_documentation: options.resourceDocumentation } : {}),
  };
}

/**
 * RFC 9728 §3.1: the well-known path is inserted between the host and the resource's path, so
 * `https://mcp.example.com/mcp` has its metadata at
 * `https://mcp.example.com/.well-known/oauth-protected-resource/mcp`.
 */
export function protectedResourceMetadataUrl(resource: string): string {
  const url = new URL(resource);
  const path = url.pathname === '/' ? '' : url.pathname.replace(/\/$/, '');
  return `${url.origin}/.well-known/oauth-protected-resource${path}`;
}

/** The paths a handler answers: the path-suffixed form, and the bare one clients also probe. */
export function protectedResourceMetadataPaths(resource: string): string[] {
  const suffixed = new URL(protectedResourceMetadataUrl(resource)).pathname;
  return [...new Set([suffixed, '/.well-known/oauth-protected-resource'])];
}

/**
 * A Node request handler for the metadata: answers GET, HEAD and CORS preflight at
 * {@link protectedResourceMetadataPaths} and returns true; returns false for any other path (so it
 * can sit in front of other handlers). Browser-based clients (MCP Inspector) may read it: CORS `*`.
 */
export function protectedResourceMetadataHandler(
  resource: string,
  document: () => ProtectedResourceMetadata | Promise<ProtectedResourceMetadata>,
): (req: IncomingMessage, res: ServerResponse) => Promise<boolean> {
  const paths = new Set(protectedResourceMetadataPaths(resource));
  return async (req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    if (!paths.has(path)) return false;
    res.setHeader('Access-Control-Allow-Origin', '*');
    if (req.method === 'OPTIONS') {
      res.writeHead(204, { 'Access-Control-Allow-Methods': 'GET, HEAD, OPTIONS', 'Access-Control-Allow-Headers': req.headers['access-control-request-headers'] ?? '*', 'Access-Control-Max-Age': '600' });
      res.end();
      return true;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD, OPTIONS', 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ error: 'method_not_allowed' }));
      return true;
    }
    let body: string;
    try {
      body = JSON.stringify(await document());
    } catch {
      res.writeHead(503, { 'Content-Type': 'application/json', 'Retry-After': '5', 'Cache-Control': 'no-store' });
      res.end(JSON.stringify({ error: 'temporarily_unavailable', error_description: 'the resource metadata cannot be loaded from the authorization server right now' }));
      return true;
    }
    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'public, max-age=300', 'Content-Length': Buffer.byteLength(body) });
    res.end(req.method === 'HEAD' ? undefined : body);
    return true;
  };
}
