/**
 * Why a request was not allowed, as a typed error. Each code maps to one RFC 6750 §3.1 (or RFC 9449
 * §7.1) answer in {@link challenge}.
 */

/** The reasons {@link verifyAccessToken} refuses a request. */
export type TokenErrorCode =
  /** No `Authorization` header, or one with another scheme (RFC 6750 §3.1: no error code). */
  | 'missing'
  /** Not a `Bearer`/`DPoP` credential, not a compact JWS, or not an access token (`typ` is not `at+jwt`, RFC 9068 §4). */
  | 'malformed'
  /** The signature does not verify against the authorization server's keys, or uses an algorithm not allowed (`none`, HMAC). */
  | 'bad_signature'
  /** `exp` has passed (allowing the clock tolerance). */
  | 'expired'
  /** `nbf` or `iat` is in the future (allowing the clock tolerance). */
  | 'not_yet_valid'
  /** `iss` is not the authorization server this resource server trusts. */
  | 'wrong_issuer'
  /** `aud` does not name this resource server: a token for another MCP server (no token passthrough). */
  | 'wrong_audience'
  /** The token is valid but lacks a scope the operation needs. */
  | 'insufficient_scope'
  /** The token is bound to a key (`cnf.jkt`, RFC 9449 §6) but came as a Bearer token or without a DPoP proof. */
  | 'dpop_required'
  /** The DPoP proof is invalid, or proves possession of another key than the token is bound to. */
  | 'dpop_mismatch'
  /** The authorization server's metadata or keys could not be fetched: the caller may retry (503). */
  | 'unavailable';

export class TokenError extends Error {
  override readonly name = 'TokenError';
  constructor(
    readonly code: TokenErrorCode,
    /** Safe to show the client: says what is wrong, never echoes the token. */
    readonly description: string,
    /** For `insufficient_scope`: every scope the operation needs (RFC 6750 §3.1, MCP scope challenges). */
    readonly requiredScopes: readonly string[] = [],
  ) {
    super(description);
  }
}

export function isTokenError(value: unknown): value is TokenError {
  return value instanceof TokenError;
}
