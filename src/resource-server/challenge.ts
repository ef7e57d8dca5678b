/**
 * The HTTP answer to a refused request: RFC 6750 §3 (`WWW-Authenticate: Bearer`), RFC 9728 §5.1
 * (`resource_metadata`, so a client can discover the authorization server), RFC 9449 §7.1 (the
 * `DPoP` challenge for key-bound tokens), and the MCP authorization spec's scope challenges: the
 * `scope` parameter lists every scope the operation needs, so that a client asks once for all.
 *
 * | code | status | challenge |
 * | --- | --- | --- |
 * | `missing` | 401 | `Bearer resource_metadata=…, scope=…` (no error code, RFC 6750 §3.1) |
 * | `malformed`, `bad_signature`, `expired`, `not_yet_valid`, `wrong_issuer`, `wrong_audience` | 401 | `Bearer error="invalid_token", …` |
 * | `insufficient_scope` | 403 | `Bearer error="insufficient_scope", scope=<all needed>, …` |
 * | `dpop_required` | 401 | `DPoP error="invalid_token", algs=…, …` |
 * | `dpop_mismatch` | 401 | `DPoP error="invalid_dpop_proof", algs=…, …` |
 * | `unavailable` | 503 | none; `Retry-After: 5` |
 */
import type { TokenError } from './errors.ts';

export interface ChallengeOptions {
  /** The absolute URL of this resource's RFC 9728 metadata (see {@link protectedResourceMetadataUrl}). */
  resourceMetadataUrl: string;
  /** The scopes the refused operation needs (used when the error itself names none). */
  scopes?: readonly string[];
  /** Algorithms accepted for DPoP proofs, announced in DPoP challenges. Default ES256. */
  dpopAlgorithms?: readonly string[];
}

export interface Challenge {
  status: 401 | 403 | 503;
  headers: Record<string, string>;
  /** A JSON body for clients that read it (`error` is the RFC 6750 code, when there is one). */
  body: { error?: string; error_description: string };
}

/** RFC 6750 §3: error_description is %x20-21 / %x23-5B / %x5D-7E. */
function quoted(value: string): string {
  return `"${value.replace(/[^\x20-\x21\x23-\x5B\x5D-\x7E]/g, '')}"`;
}

function header(scheme: 'Bearer' | 'DPoP', params: [string, string | undefined][]): string {
  return `${scheme} ${params
    .filter((p): p is [string, string] => p[1] !== undefined && p[1] !== '')
    .map(([k, v]) => `${k}=${quoted(v)}`)
    .join(', ')}`;
}

/** The status, `WWW-Authenticate` header and body for a refused request. */
export function challenge(error: TokenError, options: ChallengeOptions): Challenge {
  const scopes = (error.requiredScopes.length ? error.requiredScopes : (options.scopes ?? [])).join(' ') || undefined;
  const metadata = options.resourceMetadataUrl;
  const description = error.description;
  switch (error.code) {
    case 'missing':
      return {
        status: 401,
        headers: { 'WWW-Authenticate': header('Bearer', [['resource_metadata', metadata], ['scope', scopes]]) },
        body: { error_description: description },
      };
    case 'insufficient_scope':
      return {
        status: 403,
        headers: {
          'WWW-Authenticate': header('Bearer', [['error', 'insufficient_scope'], ['error_description', description], ['scope', scopes], ['resource_metadata', metadata]]),
        },
        body: { error: 'insufficient_scope', error_description: description },
      };
    case 'dpop_required':
    case 'dpop_mismatch': {
      const code = error.code === 'dpop_required' ? 'invalid_token' : 'invalid_dpop_proof';
      const algs = (options.dpopAlgorithms ?? ['ES256']).join(' ');
      return {
        status: 401,
        headers: {
          'WWW-Authenticate': header('DPoP', [['error', code], ['error_description', description], ['algs', algs], ['scope', scopes], ['resource_metadata', metadata]]),
        },
        body: { error: code, error_description: description },
      };
    }
    case 'unavailable':
      return {
        status: 503,
        headers: { 'Retry-After': '5' },
        body: { error: 'temporarily_unavailable', error_description: 'the authorization server cannot be reached to check the token: try again shortly' },
      };
    default:
      return {
        status: 401,
        headers: {
          'WWW-Authenticate': header('Bearer', [['error', 'invalid_token'], ['error_description', description], ['scope', scopes], ['resource_metadata', metadata]]),
        },
        body: { error: 'invalid_token', error_description: description },
      };
  }
}
