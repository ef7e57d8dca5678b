/**
 * Redirect-URI rules for MCP clients (OAuth 2.1 §1.5 and §2.3.1; RFC 8252 §7; RFC 9700 §2.1).
 *
 * - https URIs: any host, matched exactly.
 * - http only on loopback (127.0.0.1, [::1], localhost), where any port is accepted at
 *   authorization time (RFC 8252 §7.3).
 * - private-use schemes: reverse-domain (`com.example.app:/cb`, RFC 8252 §7.1) or a known MCP
 *   client's (`cursor://…`, `vscode://…`, {@link KNOWN_CLIENT_SCHEMES}); no other single-word scheme.
 * - never fragments (RFC 6749 §3.1.2), wildcards, credentials, or the dangerous schemes
 *   `javascript:`, `data:`, `file:`, `vbscript:`, `blob:`, `about:`.
 */
export type RedirectUriKind = 'https' | 'loopback' | 'private-use';
export type RedirectUriCheck = { ok: true; kind: RedirectUriKind } | { ok: false; reason: string };

export const LOOPBACK_HOSTS = new Set(['127.0.0.1', '[::1]', 'localhost']);
const FORBIDDEN_SCHEMES = new Set(['javascript:', 'vbscript:', 'data:', 'blob:', 'file:', 'about:', 'ws:', 'wss:', 'ftp:']);
const SCHEME = /^[a-z][a-z0-9+.-]*:/i;
export const MAX_REDIRECT_URI_LENGTH = 2000;
/** Registration limits (issue 4 §3): enough for every real client, small enough to store and show. */
export const MAX_REDIRECT_URIS = 10;
export const MAX_CLIENT_NAME_LENGTH = 200;
const OTHER_URI_FIELDS = ['client_uri', 'logo_uri', 'tos_uri', 'policy_uri', 'jwks_uri'];

export function checkRedirectUri(uri: unknown): RedirectUriCheck {
  if (typeof uri !== 'string' || !uri) return { ok: false, reason: 'redirect_uris must contain strings' };
  const shown = JSON.stringify(uri.length > 100 ? `${uri.slice(0, 100)}…` : uri);
  if (uri.length > MAX_REDIRECT_URI_LENGTH) return { ok: false, reason: `${shown} is longer than ${MAX_REDIRECT_URI_LENGTH} characters` };
  if (/[\s\x00-\x1f\x7f]/.test(uri)) return { ok: false, reason: `${shown} contains whitespace or control characters` };
  if (!SCHEME.test(uri)) return { ok: false, reason: `${shown} is not an absolute URI` };
  const url = URL.parse(uri);
  if (!url) return { ok: false, reason: `${shown} is not a valid URI` };
  if (uri.includes('#')) return { ok: false, reason: `${shown} must not contain a fragment` };
  if (uri.includes('*')) return { ok: false, reason: `${shown} must not contain wildcards` };
  if (url.username || url.password) return { ok: false, reason: `${shown} must not contain credentials` };
  if (FORBIDDEN_SCHEMES.has(url.protocol)) return { ok: false, reason: `${shown} uses the forbidden ${url.protocol.slice(0, -1)} scheme` };
  if (url.protocol === 'https:') {
    if (!url.hostname) return { ok: false, reason: `${shown} has no host` };
    return { ok: true, kind: 'https' };
  }
  if (url.protocol === 'http:') {
    if (LOOPBACK_HOSTS.has(url.hostname)) return { ok: true, kind: 'loopback' };
    return { ok: false, reason: `${shown} uses http on a host that is not loopback: use https, or http://127.0.0.1 for native apps` };
  }
  if (!isAcceptedPrivateUseScheme(url.protocol.slice(0, -1))) {
    return {
      ok: false,
      reason: `${shown} uses the ${url.protocol.slice(0, -1)} scheme: a private-use redirect URI needs a reverse-domain scheme such as com.example.app: (RFC 8252 §7.1), or one of ${[...KNOWN_CLIENT_SCHEMES].join(', ')}`,
    };
  }
  return { ok: true, kind: 'private-use' };
}

/**
 * Private-use schemes of MCP clients that predate RFC 8252's reverse-domain rule and that Gatehouse
 * accepts by name (issue 15 §4). Anything else must be reverse-domain (`com.example.app`).
 */
export const KNOWN_CLIENT_SCHEMES = new Set(['cursor', 'vscode', 'vscode-insiders', 'windsurf', 'claude']);

/**
 * RFC 8252 §7.1: a private-use scheme is "based on a domain name under [the app's] control,
 * expressed in reverse order" — at least two labels, e.g. `com.example.app`. A single-word scheme is
 * anybody's: the operating system's own handlers (`ms-msdt:`, `search-ms:`, `ms-officecmd:`,
 * `ms-word:`), the browser's (`view-source:`, `jar:`), `mailto:`. Those are refused, except the
 * known clients' above.
 */
export function isAcceptedPrivateUseScheme(scheme: string): boolean {
  const lower = scheme.toLowerCase();
  if (KNOWN_CLIENT_SCHEMES.has(lower)) return true;
  const labels = lower.split('.');
  return labels.length >= 2 && labels.every((label) => /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/.test(label)) && /^[a-z]/.test(labels[0]!);
}

/**
 * Where a redirect URI takes the user, in words for the consent and waiting pages: the host of an
 * https URI; for loopback and private-use URIs an application on this computer — never the "host"
 * of `x-app://claude.ai/…`, which names nothing the user could trust (issue 15 §4).
 */
export function describeRedirectDestination(uri: string): { shown: string; local: boolean } {
  const url = URL.parse(uri);
  if (!url) return { shown: uri, local: false };
  if (url.protocol === 'https:') return { shown: url.host, local: false };
  if (url.protocol === 'http:') return { shown: url.host, local: LOOPBACK_HOSTS.has(url.hostname) };
  return { shown: `an application on this computer (scheme ${url.protocol.slice(0, -1)})`, local: true };
}

/**
 * Array metadata whose values the profile constrains. Real MCP clients list more than we support
 * (Claude's document adds the jwt-bearer grant, VS Code's the device_code grant): unsupported
 * values are dropped rather than fatal, the way oidc-provider treats metadata documents (RFC 7591
 * §3.2.1 lets the server replace requested values; the response shows what was registered).
 */
const SUPPORTED_VALUES: Record<string, readonly string[]> = {
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
};

function containsNul(value: unknown, depth = 0): boolean {
  if (typeof value === 'string') return value.includes('\u0000');
  if (depth > 20 || value === null || typeof value !== 'object') return false;
  return Object.entries(value as Record<string, unknown>).some(([k, v]) => k.includes('\u0000') || containsNul(v, depth + 1));
}

export type ClientMetadataProblem = { error: 'invalid_redirect_uri' | 'invalid_client_metadata'; description: string };

/**
 * Normalises MCP client metadata in place: clients whose redirect URIs are loopback or private-use
 * are native apps (most MCP clients omit `application_type`, RFC 7591 §2 defaults it to web, and a
 * web client would need an exact port); a public client has no secret. Returns the first problem.
 */
/**
 * Characters that make a name display as something else (issue 15 §5): "Acme \u202Egnp.exe" shows as
 * "Acme exe.png". Bidirectional embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069)
 * and marks (U+200E, U+200F, U+061C), zero-width and invisible characters (U+200B, U+2060–U+2064,
 * U+FEFF, U+180E), and C1 controls (U+0080–U+009F) — Unicode TR #36 §2 (visual spoofing). The
 * joiners U+200C and U+200D stay allowed: Persian and Indic names and emoji sequences need them, and
 * they reorder nothing.
 */
const DECEPTIVE_CHARACTERS = /[\u0080-\u009f\u061c\u180e\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]/u;

export function normalizeClientMetadata(metadata: Record<string, unknown>): ClientMetadataProblem | undefined {
  const uris = metadata.redirect_uris;
  if (uris !== undefined && !Array.isArray(uris)) {
    return { error: 'invalid_client_metadata', description: 'redirect_uris must be an array' };
  }
  if (Array.isArray(uris) && uris.length > MAX_REDIRECT_URIS) {
    return { error: 'invalid_redirect_uri', description: `redirect_uris may list at most ${MAX_REDIRECT_URIS} URIs` };
  }
  const name = metadata.client_name;
  if (typeof name === 'string' && (name.length > MAX_CLIENT_NAME_LENGTH || /[\x00-\x1f\x7f]/.test(name))) {
    return { error: 'invalid_client_metadata', description: `client_name must be at most ${MAX_CLIENT_NAME_LENGTH} characters, without control characters` };
  }
  if (typeof name === 'string' && DECEPTIVE_CHARACTERS.test(name)) {
    return {
      error: 'invalid_client_metadata',
      description: 'client_name must not contain invisible or reordering characters (bidirectional overrides and isolates, zero-width characters, C1 controls)',
    };
  }
  for (const field of OTHER_URI_FIELDS) {
    const value = metadata[field];
    if (typeof value === 'string' && value.length > MAX_REDIRECT_URI_LENGTH) {
      return { error: 'invalid_client_metadata', description: `${field} is longer than ${MAX_REDIRECT_URI_LENGTH} characters` };
    }
    // URL parsing silently drops tabs and newlines; what is stored and shown must be the URI as checked.
    if (typeof value === 'string' && /[\s\x00-\x1f\x7f]/.test(value)) {
      return { error: 'invalid_client_metadata', description: `${field} must not contain whitespace or control characters` };
    }
  }
  const kinds = new Set<RedirectUriKind>();
  for (const uri of (uris as unknown[] | undefined) ?? []) {
    const check = checkRedirectUri(uri);
    if (!check.ok) return { error: 'invalid_redirect_uri', description: check.reason };
    kinds.add(check.kind);
  }
  // PostgreSQL's jsonb cannot hold U+0000; refuse it anywhere in the metadata rather than fail later.
  if (containsNul(metadata)) return { error: 'invalid_client_metadata', description: 'client metadata must not contain NUL characters' };
  if (kinds.has('loopback') || kinds.has('private-use')) metadata.application_type = 'native';
  for (const [field, supported] of Object.entries(SUPPORTED_VALUES)) {
    const values = metadata[field];
    if (!Array.isArray(values) || !values.every((v) => typeof v === 'string')) continue; // the schema reports it
    const kept = [...new Set(values.filter((v) => supported.includes(v)))];
    if (values.length > 0 && kept.length === 0) {
      return {
        error: 'invalid_client_metadata',
        description: `${field} has no value Gatehouse supports (${supported.join(', ')}); got ${values.join(', ')}`,
      };
    }
    metadata[field] = kept;
  }
  // RFC 7591 §2.1: grant_types and response_types must agree; code is the only response type.
  if (Array.isArray(metadata.grant_types)) {
    if (!metadata.grant_types.includes('authorization_code')) {
      return {
        error: 'invalid_client_metadata',
        description: 'grant_types must include authorization_code, the only flow Gatehouse offers to MCP clients',
      };
    }
    // Every code client may refresh (issue 8 §7). Zed registers, and Goose's metadata document
    // lists, only authorization_code, yet both refresh (zed#53784, goose#11235); without this they
    // would be refused at refresh or sent back through the browser on every start.
    if (!metadata.grant_types.includes('refresh_token')) metadata.grant_types = [...metadata.grant_types, 'refresh_token'];
  }
  // MCP clients send the scopes they may want (e.g. the protected resource's scopes_supported) in
  // the registration body. oidc-provider would refuse any that are not OpenID scopes and then use
  // the list as a hard allow-list; scopes are decided per resource at /authorize instead.
  delete metadata.scope;
  if (metadata.token_endpoint_auth_method === 'none') {
    delete metadata.client_secret;
    delete metadata.client_secret_expires_at;
  }
  return undefined;
}
