/**
 * Canonical form of a resource indicator (RFC 8707 §2; MCP authorization "Canonical Server URI"):
 * absolute URI, no fragment, lower-case scheme and host, no default port, and no trailing slash
 * when the path is empty. A trailing slash on a non-empty path is kept: `/mcp/` and `/mcp` are
 * different resources.
 */
export type CanonicalResult = { ok: true; uri: string } | { ok: false; reason: string };

export function canonicalizeResourceUri(input: string): CanonicalResult {
  const trimmed = input.trim();
  if (trimmed !== input || !trimmed) return { ok: false, reason: 'resource must be an absolute URI without surrounding spaces' };
  if (trimmed.includes('#')) return { ok: false, reason: 'resource must not contain a fragment' };
  const url = URL.parse(trimmed);
  if (!url) return { ok: false, reason: 'resource must be an absolute URI' };
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    return { ok: false, reason: 'resource must be an http or https URI' };
  }
  if (url.username || url.password) return { ok: false, reason: 'resource must not contain credentials' };
  if (!url.hostname) return { ok: false, reason: 'resource must have a host' };
  const path = url.pathname === '/' ? '' : url.pathname;
  return { ok: true, uri: `${url.protocol}//${url.host}${path}${url.search}` };
}
