/**
 * Rotation grace for refresh tokens (issue 14 §1; docs/security.md I-32).
 *
 * A client that refreshed but never got the answer (its connection broke, the request timed out
 * while the database was frozen, the instance that served it was killed) holds only the token it
 * has just rotated. Strict reuse detection (RFC 9700 §4.14.2) would revoke its grant at its next
 * attempt, and the user would have to sign in again. OAuth 2.1 §4.3.1 and RFC 9700 do not forbid a
 * grace window; Ory Hydra (`rotation_grace_period`), Okta (leeway, 30 s) and Auth0 (reuse interval)
 * ship one (shared/notes/rotation-grace-and-audit-sealing.md).
 *
 * The rule. A refresh token T that was rotated into S gets ONE more use when all of this holds:
 * - it was rotated less than GATEHOUSE_REFRESH_TOKEN_REUSE_GRACE ago;
 * - the request names the client T was issued to;
 * - its successor S was never used (the client really did not get it) and is alive;
 * - T's grace use is not spent yet.
 * Then Gatehouse issues a NEW successor S′ and marks S used in the same statement, so exactly one
 * chain stays alive: S was never delivered (or was, to someone who also holds T; if S is presented
 * later that is reuse, and the whole grant goes, S′ with it). Anything else — outside the window,
 * another client, a second retry, a successor already used — is reuse: the grant is revoked.
 *
 * Why a new successor rather than the same one again (Better Auth's choice): the same successor
 * would have to be stored recoverably (encrypted under a key derived from T); a new one needs
 * nothing but digests, and a thief who replays T inside the window gains exactly as much either
 * way (a working access token until the real client's next refresh revokes the grant).
 */
import { sql, type RawBuilder } from 'kysely';
import { requestContext } from '../http/request-context.ts';

/** What the adapter learns about the refresh request being served (one per token request). */
export interface RefreshRequest {
  /** The client the request names (oidc-provider authenticates it before the token is used). */
  clientId: string;
  /** The presented refresh token's digest (oidc_payloads.id). */
  presented: string;
  /** The presented token is a grace retry: its consumption replaces its undelivered successor. */
  graceRetry?: boolean;
  /** A token consumed in this request: its successor records it (`rotated_from`). */
  rotatedFrom?: string;
  /** A used token presented by another client than its own: the grant was revoked. */
  foreignReplay?: { grantId: string; accountId: string | undefined };
}

const KEY = 'token-request:refresh';

/** Called by the read-ahead of a refresh-token grant (oidc/token-prefetch.ts). */
export function beginRefreshRequest(clientId: string, presented: string): void {
  requestContext()?.memo.set(KEY, { clientId, presented } satisfies RefreshRequest);
}

export function refreshRequest(): RefreshRequest | undefined {
  return requestContext()?.memo.get(KEY) as RefreshRequest | undefined;
}

/**
 * SQL: whether the oidc_payloads row aliased `t` may be presented once more (the rule above, but
 * for the client check, which needs the request). Used by the read-ahead and by the adapter's own
 * read, so both decide alike.
 */
export function inGraceSql(graceSeconds: number): RawBuilder<boolean> {
  if (graceSeconds <= 0) return sql<boolean>`false`;
  return sql<boolean>`(t.model = 'RefreshToken' AND t.consumed_at IS NOT NULL AND t.reused_at IS NULL
    AND t.consumed_at > now() - make_interval(secs => ${graceSeconds})
    AND EXISTS (SELECT 1 FROM oidc_payloads s WHERE s.rotated_from = t.id AND s.model = 'RefreshToken'
      AND s.consumed_at IS NULL AND (s.expires_at IS NULL OR s.expires_at > now())))`;
}
