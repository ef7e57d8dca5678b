/**
 * Verifying an access token at an MCP server (the resource server): RFC 9068 (JWT access tokens)
 * §4, RFC 6750 §2.1 (the Authorization header), RFC 8707 / MCP authorization "Token Audience
 * Binding and Validation", and RFC 9449 §7 for sender-constrained (DPoP) tokens.
 *
 * In order: the header is `Bearer <token>` or `DPoP <token>`; the token is a compact JWS with
 * `typ: at+jwt`; its algorithm is an allowed asymmetric one (never `none`, never HMAC); the signature
 * verifies against the authorization server's published keys; `iss` is the trusted issuer; `aud`
 * names this resource; `exp`, `nbf` and `iat` hold (with the clock tolerance); `sub` and
 * `client_id` are present; a key-bound token comes with a valid DPoP proof; and the granted scopes,
 * under the resource's scope hierarchy, cover the required ones.
 *
 * What it does NOT check, by design or because it cannot:
 * - revocation: a token stays valid until `exp`, even after the user, the client or the connection
 *   is disabled at the authorization server (keep access-token lifetimes short);
 * - whether the user or client still exists or is still approved (no call to the authorization
 *   server per request; no token introspection);
 * - replay of the access token itself (bearer tokens are replayable by nature; use DPoP), and DPoP
 *   `jti` replay unless you pass `dpop.seenJti`;
 * - tokens sent anywhere but the Authorization header: a token in the query string or the body is
 *   ignored (RFC 6750 §2.3 is not supported, per OAuth 2.1 §5.2 and the MCP spec);
 * - what the tool call does with the data: authorization beyond scopes is yours.
 */
import { compactVerify, decodeProtectedHeader, errors as joseErrors } from 'jose';
import { authorizationServer, type AuthorizationServer, type AuthorizationServerOptions } from './authorization-server.ts';
import { checkDpopProof, type DpopRequest } from './dpop.ts';
import { TokenError } from './errors.ts';
import { missingScopes, parseScopeClaim, type ScopeIncludes } from './scopes.ts';

/** Asymmetric algorithms accepted by default. Gatehouse signs with ES256. */
export const DEFAULT_ALGORITHMS = ['ES256', 'ES384', 'ES512', 'EdDSA', 'RS256', 'PS256'] as const;

export interface VerifyOptions extends AuthorizationServerOptions {
  /** This MCP server's resource URI exactly as registered at Gatehouse: the only audience accepted. */
  resource: string;
  /** Scopes the operation needs (all of them; the hierarchy applies). */
  requiredScopes?: readonly string[];
  /** The resource's scope hierarchy: a broader scope satisfies the narrower ones it includes. */
  scopeIncludes?: ScopeIncludes;
  /** Seconds of clock difference tolerated for `exp`, `nbf` and `iat`. Default 30. */
  clockToleranceSeconds?: number;
  /** Accepted signing algorithms (asymmetric only). Default {@link DEFAULT_ALGORITHMS}. */
  algorithms?: readonly string[];
  /** The request, to check a DPoP proof for key-bound tokens (RFC 9449 §7.1). */
  dpop?: DpopRequest;
  /** Use this authorization-server cache instead of the shared one for `issuer`. */
  authorizationServer?: AuthorizationServer;
}

/** A verified access token. */
export interface VerifiedToken {
  /** The access token itself (to pass on to the MCP SDK's AuthInfo; never log it). */
  token: string;
  /** `sub`: the user (at Gatehouse, the account id). */
  subject: string;
  /** `client_id`: the MCP client the user authorized. */
  clientId: string;
  /** The granted scopes, as the token lists them (the hierarchy is applied to checks, not here). */
  scopes: string[];
  expiresAt: Date;
  issuedAt: Date | undefined;
  /** `aud`, as a list. */
  audience: string[];
  /** `cnf.jkt` for a DPoP-bound token. */
  boundKeyThumbprint: string | undefined;
  /** Every claim, verified. */
  claims: Record<string, unknown>;
}

const TOKEN68 = /^[A-Za-z0-9\-._~+/]+=*$/;

/** Splits an Authorization header into scheme and token (RFC 6750 §2.1, RFC 9449 §7.1). */
export function readAuthorizationHeader(header: string | string[] | undefined): { scheme: 'bearer' | 'dpop'; token: string } {
  if (Array.isArray(header)) throw new TokenError('malformed', 'send exactly one Authorization header');
  const value = header?.trim();
  if (!value) throw new TokenError('missing', 'an access token is required');
  const space = value.indexOf(' ');
  const scheme = (space < 0 ? value : value.slice(0, space)).toLowerCase();
  if (scheme !== 'bearer' && scheme !== 'dpop') throw new TokenError('missing', 'an access token is required (Authorization: Bearer)');
  const token = space < 0 ? '' : value.slice(space + 1).trim();
  if (!token || !TOKEN68.test(token)) throw new TokenError('malformed', 'the Authorization header does not carry a well-formed token');
  return { scheme, token };
}

const asDate = (seconds: unknown) => (typeof seconds === 'number' ? new Date(seconds * 1000) : undefined);

/**
 * Verifies the access token in an `Authorization` header for this resource. Resolves to the
 * token's subject, client, scopes and expiry; rejects with a {@link TokenError} saying why not.
 * Pass the result of a rejection to {@link challenge} for the HTTP answer.
 */
export async function verifyAccessToken(authorizationHeader: string | string[] | undefined, options: VerifyOptions): Promise<VerifiedToken> {
  const { scheme, token } = readAuthorizationHeader(authorizationHeader);
  const as = options.authorizationServer ?? authorizationServer(options);
  const algorithms = [...(options.algorithms ?? DEFAULT_ALGORITHMS)];
  const tolerance = options.clockToleranceSeconds ?? 30;

  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(token);
  } catch {
    throw new TokenError('malformed', 'the access token is not a JWT');
  }
  if (token.split('.').length !== 3) throw new TokenError('malformed', 'the access token is not a signed JWT');
  // RFC 9068 §4: reject anything but an access token (an ID token, a DPoP proof, a signed request).
  if (header.typ !== 'at+jwt' && header.typ !== 'application/at+jwt') {
    throw new TokenError('malformed', 'the token is not a JWT access token (typ must be at+jwt)');
  }
  if (typeof header.alg !== 'string' || !algorithms.includes(header.alg)) {
    throw new TokenError('bad_signature', `tokens signed with ${String(header.alg)} are not accepted`);
  }

  let claims: Record<string, unknown>;
  try {
    const { payload } = await compactVerify(token, as.key, { algorithms });
    claims = JSON.parse(new TextDecoder().decode(payload)) as Record<string, unknown>;
    if (!claims || typeof claims !== 'object' || Array.isArray(claims)) throw new SyntaxError('not an object');
  } catch (err) {
    if (err instanceof TokenError) throw err;
    if (err instanceof SyntaxError) throw new TokenError('malformed', 'the access token\'s claims are not a JSON object');
    if (err instanceof joseErrors.JWKSNoMatchingKey || err instanceof joseErrors.JWKSMultipleMatchingKeys) {
      throw new TokenError('bad_signature', 'the access token is signed with a key the authorization server does not publish');
    }
    throw new TokenError('bad_signature', 'the access token\'s signature does not verify');
  }

  if (claims.iss !== as.issuer) throw new TokenError('wrong_issuer', 'the access token was issued by another authorization server');
  const audience = typeof claims.aud === 'string' ? [claims.aud] : Array.isArray(claims.aud) ? claims.aud.filter((a): a is string => typeof a === 'string') : [];
  if (!audience.includes(options.resource)) {
    throw new TokenError('wrong_audience', 'the access token is for another resource: get one for this MCP server');
  }
  const now = Date.now() / 1000;
  if (typeof claims.exp !== 'number') throw new TokenError('malformed', 'the access token has no expiry');
  if (claims.exp + tolerance <= now) throw new TokenError('expired', 'the access token has expired');
  if (typeof claims.nbf === 'number' && claims.nbf - tolerance > now) throw new TokenError('not_yet_valid', 'the access token is not valid yet');
  if (typeof claims.iat === 'number' && claims.iat - tolerance > now) throw new TokenError('not_yet_valid', 'the access token was issued in the future');
  if (typeof claims.sub !== 'string' || typeof claims.client_id !== 'string') {
    throw new TokenError('malformed', 'the access token lacks sub or client_id (RFC 9068 §2.2)');
  }

  const jkt = (claims.cnf as { jkt?: unknown } | undefined)?.jkt;
  if (typeof jkt === 'string') {
    // RFC 9449 §7.1: a key-bound token only with the DPoP scheme and a proof.
    if (scheme !== 'dpop') throw new TokenError('dpop_required', 'the access token is bound to a key: send it with the DPoP scheme and a proof');
    if (!options.dpop) throw new TokenError('dpop_required', 'the access token is bound to a key, and this resource server cannot check DPoP proofs here');
    await checkDpopProof(token, jkt, options.dpop);
  } else if (scheme === 'dpop') {
    throw new TokenError('dpop_mismatch', 'the access token is not bound to a key: send it with the Bearer scheme');
  }

  const scopes = parseScopeClaim(claims.scope);
  const required = options.requiredScopes ?? [];
  if (missingScopes(scopes, required, options.scopeIncludes).length) {
    throw new TokenError('insufficient_scope', `this needs the scopes ${required.join(' ')}`, required);
  }

  return {
    token,
    subject: claims.sub,
    clientId: claims.client_id,
    scopes,
    expiresAt: new Date(claims.exp * 1000),
    issuedAt: asDate(claims.iat),
    audience,
    boundKeyThumbprint: typeof jkt === 'string' ? jkt : undefined,
    claims,
  };
}
