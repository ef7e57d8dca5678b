/**
 * Connections: the grants users gave clients, as the admin console shows and revokes them.
 *
 * A grant is oidc-provider's record of consent (model `Grant` in `oidc_payloads`, see adapter.ts):
 * its payload holds `accountId`, `clientId` and `resources` ({ resource URI: "scope scope" }); the
 * row's `account_id` and `client_id` columns are set from it. Refresh tokens and authorization codes
 * point at their grant through the `grant_id` column. Access tokens are JWTs, not stored: revoking
 * a connection stops the next refresh, and issued access tokens expire on their own (minutes).
 */
import { sql } from 'kysely';
import type { DB } from '../db/database.ts';
import { current, grantLockQuery } from '../db/unit-of-work.ts';

/** One live grant: who let which client use which MCP servers with which scopes. */
export interface Connection {
  grantId: string;
  accountId: string;
  /** null when the account no longer exists. */
  email: string | null;
  accountDisabled: boolean;
  clientId: string;
  /** The client's `client_name`, or its id when it has none; null when the client is gone. */
  clientName: string | null;
  /** Resource URI → granted scopes. */
  resources: Record<string, string[]>;
  /** When the user first granted it (a later consent adds to the same grant). */
  grantedAt: Date;
  expiresAt: Date | null;
  /**
   * The newest of: the last `token.issued` / `token.refreshed` audit event for this client and
   * user, and the issue time of the grant's newest refresh token. null when never used.
   */
  lastUsedAt: Date | null;
}

export interface ConnectionFilter {
  clientId?: string | undefined;
  accountId?: string | undefined;
  limit?: number | undefined;
}

/** Rows that belong to a grant and die with it (`revokeTokens` in clients.repository.ts does the same per client). */
const GRANT_BOUND_MODELS = ['RefreshToken', 'AuthorizationCode', 'AccessToken'];
const TOKEN_EVENTS = ['token.issued', 'token.refreshed'];

/** oidc-provider grant ids are URL-safe random strings; anything else is not a grant id. */
const isGrantId = (id: string) => /^[A-Za-z0-9_-]{1,128}$/.test(id);

type Row = {
  grant_id: string;
  account_id: string | null;
  client_id: string | null;
  payload: Record<string, unknown>;
  created_at: Date;
  expires_at: Date | null;
  email: string | null;
  disabled_at: Date | null;
  client_name: string | null;
  client_known: boolean | null;
  last_token_at: Date | string | null;
  last_refresh_iat: string | number | null;
};

function scopesOf(payload: Record<string, unknown>): Record<string, string[]> {
  const resources = payload.resources;
  const out: Record<string, string[]> = {};
  if (!resources || typeof resources !== 'object') return out;
  for (const [uri, scope] of Object.entries(resources as Record<string, unknown>)) {
    out[uri] = typeof scope === 'string' ? scope.split(' ').filter(Boolean) : [];
  }
  return out;
}

function toConnection(row: Row): Connection {
  const lastToken = row.last_token_at === null ? null : new Date(row.last_token_at);
  const lastRefresh = row.last_refresh_iat === null ? null : new Date(Number(row.last_refresh_iat) * 1000);
  const lastUsedAt = lastToken && lastRefresh ? (lastToken > lastRefresh ? lastToken : lastRefresh) : (lastToken ?? lastRefresh);
  return {
    grantId: row.grant_id,
    accountId: row.account_id ?? '',
    email: row.email,
    accountDisabled: row.disabled_at !== null,
    clientId: row.client_id ?? '',
    clientName: row.client_known ? row.client_name || row.client_id : null,
    resources: scopesOf(row.payload),
    grantedAt: row.created_at,
    expiresAt: row.expires_at,
    lastUsedAt,
  };
}

export function createConnectionsRepository(db: DB) {
  function select() {
    return current(db)
      .selectFrom('oidc_payloads as g')
      .leftJoin('accounts as a', (join) => join.on((eb) => eb(eb.cast('a.id', 'text'), '=', eb.ref('g.account_id'))))
      .leftJoin('clients as c', 'c.client_id', 'g.client_id')
      .select((eb) => [
        'g.id as grant_id',
        'g.account_id',
        'g.client_id',
        'g.payload',
        'g.created_at',
        'g.expires_at',
        'a.email',
        'a.disabled_at',
        sql<string | null>`c.metadata->>'client_name'`.as('client_name'),
        sql<boolean | null>`c.client_id is not null`.as('client_known'),
        eb
          .selectFrom('audit_events as e')
          .select((e) => e.fn.max('e.occurred_at').as('m'))
          .whereRef('e.client_id', '=', 'g.client_id')
          .whereRef('e.account_id', '=', 'g.account_id')
          .where('e.event', 'in', TOKEN_EVENTS)
          .as('last_token_at'),
        eb
          .selectFrom('oidc_payloads as r')
          .select(sql<string | null>`max((r.payload->>'iat')::bigint)`.as('m'))
          .where('r.model', '=', 'RefreshToken')
          .whereRef('r.grant_id', '=', 'g.id')
          .as('last_refresh_iat'),
      ])
      .where('g.model', '=', 'Grant')
      .where((eb) => eb.or([eb('g.expires_at', 'is', null), eb('g.expires_at', '>', sql<Date>`now()`)]));
  }

  return {
    /** Live grants, newest first, optionally of one client and/or one user. */
    async list(filter: ConnectionFilter = {}): Promise<Connection[]> {
      let query = select().orderBy('g.created_at', 'desc').limit(Math.min(filter.limit ?? 500, 1000));
      if (filter.clientId) query = query.where('g.client_id', '=', filter.clientId);
      if (filter.accountId) query = query.where('g.account_id', '=', filter.accountId);
      return (await query.execute()).map((row) => toConnection(row as Row));
    },

    async find(grantId: string): Promise<Connection | undefined> {
      if (!isGrantId(grantId)) return undefined;
      const row = await select().where('g.id', '=', grantId).executeTakeFirst();
      return row && toConnection(row as Row);
    },

    /** How many live grants include the resource with this URI, and how many hold each of its scopes. */
    async resourceUsage(resourceUri: string): Promise<{ connections: number; scopes: Map<string, number> }> {
      const rows = await current(db)
        .selectFrom('oidc_payloads')
        .select(sql<string>`payload->'resources'->>${resourceUri}`.as('scope'))
        .where('model', '=', 'Grant')
        .where(sql<string | null>`payload->'resources'->>${resourceUri}`, 'is not', null)
        .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', sql<Date>`now()`)]))
        .execute();
      const scopes = new Map<string, number>();
      for (const row of rows) for (const scope of new Set(row.scope.split(' ').filter(Boolean))) scopes.set(scope, (scopes.get(scope) ?? 0) + 1);
      return { connections: rows.length, scopes };
    },

    /**
     * Ends every sign-in session (oidc-provider `Session`) of the account, so each browser must
     * sign in again. Needed when an account is disabled: oidc-provider fails with a server error on
     * a session whose account `findAccount` no longer returns. Returns how many sessions ended.
     */
    async endSessions(accountId: string): Promise<number> {
      const result = await current(db).deleteFrom('oidc_payloads').where('model', '=', 'Session').where('account_id', '=', accountId).executeTakeFirst();
      // …and its admin-console sessions, if it is an administrator.
      const admin = await current(db).deleteFrom('admin_sessions').where('account_id', '=', accountId).executeTakeFirst();
      return Number(result.numDeletedRows) + Number(admin.numDeletedRows);
    },

    /**
     * Deletes the grant and every refresh token, authorization code and stored access token issued
     * under it: the client's next refresh fails with `invalid_grant`. Returns how many rows went.
     */
    async revoke(grantId: string): Promise<number> {
      if (!isGrantId(grantId)) return 0;
      // The grant's row first, then its tokens (docs/security.md "Lock order"): a refresh of this
      // grant in flight holds the grant FOR KEY SHARE and then its token; taking the tokens first
      // could deadlock with it.
      await current(db).executeQuery(grantLockQuery([grantId], 'update'));
      const result = await current(db)
        .deleteFrom('oidc_payloads')
        .where((eb) =>
          eb.or([
            eb.and([eb('model', '=', 'Grant'), eb('id', '=', grantId)]),
            eb.and([eb('grant_id', '=', grantId), eb('model', 'in', GRANT_BOUND_MODELS)]),
          ]),
        )
        .executeTakeFirst();
      return Number(result.numDeletedRows);
    },
  };
}

export type ConnectionsRepository = ReturnType<typeof createConnectionsRepository>;
