/**
 * One round trip for everything a token request reads (issue 6: at most 6 SQL round trips per
 * refresh and per code exchange, audit event included).
 *
 * Before oidc-provider handles a refresh_token or authorization_code grant, one statement
 * - counts the request against the client's rate limit (the same upsert as http/rate-limit.ts,
 *   outside the request's transaction, so refused attempts count), and
 * - reads the client, the presented code or refresh token, its grant, its account (if active) and
 *   the registered resources,
 * and hands the rows to the repositories through the request's read-ahead cache
 * (db/request-cache.ts). oidc-provider then finds them without asking the database; only the
 * writes (consume, the rotated token, the audit event) remain, in one transaction.
 *
 * Before: 11 statements per refresh (limit, BEGIN, client, token, grant, account, consume, insert,
 * resource, audit, COMMIT). With this read-ahead: 6 (this one, BEGIN, consume, insert, audit,
 * COMMIT). With the writes sent as one statement too (db/unit-of-work.ts, deferred units of work): 2.
 */
import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import { noteDatabaseClock, PREPARE, type DB } from '../db/database.ts';
import { beginRefreshRequest, inGraceSql } from './rotation-grace.ts';
import { primeReadAhead, readAheadKeys } from '../db/request-cache.ts';
import type { RateLimitResult } from '../http/rate-limit.ts';
import { requestContext } from '../http/request-context.ts';

export interface PrefetchRequest {
  clientId: string;
  /** The presented credential and what it is. */
  token: { model: 'RefreshToken' | 'AuthorizationCode'; value: string } | undefined;
  rateLimit: { key: string; limit: number; windowSeconds: number };
}

const digest = (value: string) => createHash('sha256').update(value).digest('base64url');

interface Row {
  hits: number;
  remaining: number;
  /** The database's clock when it ran this (epoch ms): the anchor of the request's commit deadline. */
  db_now: number;
  client: Record<string, unknown> | null;
  token: { payload: Record<string, unknown>; consumed_at: string | null; grant_id: string | null; account_id: string | null; in_grace: boolean } | null;
  grant: { payload: Record<string, unknown>; consumed_at: string | null } | null;
  account: { id: string; email: string } | null;
  resources: Record<string, unknown>[] | null;
}

const DEFERRABLE = 'token-request:deferrable';

/** Whether this token request was read ahead and may send its writes in one statement. */
export function tokenRequestIsDeferrable(): boolean {
  return requestContext()?.memo.get(DEFERRABLE) === true;
}

export function createTokenPrefetch(db: DB, options: { refreshTokenReuseGrace?: number } = {}) {
  const inGrace = inGraceSql(options.refreshTokenReuseGrace ?? 0);
  return async function prefetch(request: PrefetchRequest): Promise<RateLimitResult> {
    const window = sql<Date>`make_interval(secs => ${request.rateLimit.windowSeconds})`;
    const tokenId = request.token ? digest(request.token.value) : '';
    const model = request.token?.model ?? '';
    // Client ids that are URLs name metadata documents, resolved elsewhere (clients/metadata-documents.ts).
    const readClient = !/^https?:/i.test(request.clientId);
    const { rows } = await sql<Row>`${sql.raw(PREPARE)}
      WITH rl AS (
        INSERT INTO rate_limit_counters (key, window_start, hits) VALUES (${request.rateLimit.key}, now(), 1)
        ON CONFLICT (key) DO UPDATE SET
          hits = CASE WHEN rate_limit_counters.window_start <= now() - ${window} THEN 1 ELSE rate_limit_counters.hits + 1 END,
          window_start = CASE WHEN rate_limit_counters.window_start <= now() - ${window} THEN now() ELSE rate_limit_counters.window_start END
        RETURNING hits, ceil(extract(epoch from window_start + ${window} - now()))::int AS remaining
      ),
      tok AS (
        SELECT t.payload, t.consumed_at, t.grant_id, t.account_id, ${inGrace} AS in_grace FROM oidc_payloads t
        WHERE ${model !== ''} AND t.model = ${model} AND t.id = ${tokenId} AND (t.expires_at IS NULL OR t.expires_at > now())
      ),
      gr AS (
        SELECT payload, consumed_at FROM oidc_payloads
        WHERE model = 'Grant' AND id = (SELECT grant_id FROM tok) AND (expires_at IS NULL OR expires_at > now())
      ),
      acc AS (
        SELECT id, email FROM accounts WHERE id::text = (SELECT account_id FROM tok) AND disabled_at IS NULL
      ),
      cl AS (
        SELECT metadata, client_secret_enc, client_secret_hash, status, ceiling, registration_method FROM clients
        WHERE ${readClient} AND client_id = ${request.clientId}
      )
      SELECT rl.hits, rl.remaining, (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS db_now,
        (SELECT row_to_json(cl) FROM cl) AS client,
        (SELECT row_to_json(tok) FROM tok) AS token,
        (SELECT row_to_json(gr) FROM gr) AS grant,
        (SELECT row_to_json(acc) FROM acc) AS account,
        (SELECT json_agg(r ORDER BY r.uri) FROM resources r) AS resources
      FROM rl
    `.execute(db);
    const row = rows[0]!;
    noteDatabaseClock(Number(row.db_now));
    if (request.token?.model === 'RefreshToken') beginRefreshRequest(request.clientId, tokenId);
    const entries: [string, unknown][] = [[readAheadKeys.resources, row.resources ?? []]];
    if (readClient) entries.push([readAheadKeys.client(request.clientId), row.client]);
    if (request.token) {
      entries.push([readAheadKeys.payload(model, tokenId), row.token]);
      if (row.token?.grant_id) entries.push([readAheadKeys.payload('Grant', row.token.grant_id), row.grant]);
      if (row.token?.account_id) entries.push([readAheadKeys.account(row.token.account_id), row.account]);
    }
    primeReadAhead(entries);
    // A registered client's code or refresh-token redemption writes only through the adapter and
    // the audit log: it can send its writes as one statement (db/unit-of-work.ts). Metadata-document
    // clients may record themselves during the request, so they keep an ordinary transaction.
    if (readClient) requestContext()?.memo.set(DEFERRABLE, true);
    return row.hits <= request.rateLimit.limit ? { allowed: true, retryAfter: 0 } : { allowed: false, retryAfter: Math.max(1, row.remaining) };
  };
}

export type TokenPrefetch = ReturnType<typeof createTokenPrefetch>;
