/**
 * Personal admin API tokens: `gh_pat_` followed by 32 random bytes; only the SHA-256 digest is
 * stored. A token acts as the admin who created it, and stops working when it is revoked or that
 * account is disabled or loses the admin role.
 */
import { createHash, randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import type { DB } from '../db/database.ts';
import { current } from '../db/unit-of-work.ts';

export const TOKEN_PREFIX = 'gh_pat_';
const digest = (token: string) => createHash('sha256').update(token).digest('base64url');

export interface ApiTokenInfo {
  id: string;
  name: string;
  createdAt: Date;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
}

export function createApiTokens(db: DB) {
  return {
    async create(accountId: string, name: string): Promise<{ token: string; info: ApiTokenInfo }> {
      const token = `${TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
      const row = await current(db)
        .insertInto('admin_api_tokens')
        .values({ account_id: accountId, name, token_digest: digest(token) })
        .returning(['id', 'name', 'created_at', 'last_used_at', 'revoked_at'])
        .executeTakeFirstOrThrow();
      return { token, info: { id: row.id, name: row.name, createdAt: row.created_at, lastUsedAt: row.last_used_at, revokedAt: row.revoked_at } };
    },

    async list(accountId: string): Promise<ApiTokenInfo[]> {
      const rows = await current(db)
        .selectFrom('admin_api_tokens')
        .select(['id', 'name', 'created_at', 'last_used_at', 'revoked_at'])
        .where('account_id', '=', accountId)
        .orderBy('created_at', 'desc')
        .execute();
      return rows.map((r) => ({ id: r.id, name: r.name, createdAt: r.created_at, lastUsedAt: r.last_used_at, revokedAt: r.revoked_at }));
    },

    async revoke(accountId: string, id: string): Promise<boolean> {
      if (!/^[0-9a-f-]{36}$/i.test(id)) return false;
      const result = await current(db)
        .updateTable('admin_api_tokens')
        .set({ revoked_at: sql<Date>`now()` })
        .where('id', '=', id)
        .where('account_id', '=', accountId)
        .where('revoked_at', 'is', null)
        .executeTakeFirst();
      return result.numUpdatedRows > 0n;
    },

    /**
     * Revokes one active token, whoever's it is (an administrator may revoke any, issue 15 §9).
     * Returns the revoked token's owner and name, or undefined when there was no such active token.
     */
    async revokeAny(id: string): Promise<{ accountId: string; name: string } | undefined> {
      if (!/^[0-9a-f-]{36}$/i.test(id)) return undefined;
      const row = await current(db)
        .updateTable('admin_api_tokens')
        .set({ revoked_at: sql<Date>`now()` })
        .where('id', '=', id)
        .where('revoked_at', 'is', null)
        .returning(['account_id', 'name'])
        .executeTakeFirst();
      return row && { accountId: row.account_id, name: row.name };
    },

    /** Revokes every active token of an account (its password was reset, or it was disabled); how many. */
    async revokeAllOf(accountId: string): Promise<number> {
      const result = await current(db)
        .updateTable('admin_api_tokens')
        .set({ revoked_at: sql<Date>`now()` })
        .where('account_id', '=', accountId)
        .where('revoked_at', 'is', null)
        .executeTakeFirst();
      return Number(result.numUpdatedRows);
    },

    /** The admin a bearer token acts as, or undefined. */
    async authenticate(token: string): Promise<{ accountId: string; email: string; tokenName: string } | undefined> {
      if (!token.startsWith(TOKEN_PREFIX) || token.length > 100) return undefined;
      const row = await db
        .updateTable('admin_api_tokens')
        .set({ last_used_at: sql<Date>`now()` })
        .from('accounts')
        .whereRef('accounts.id', '=', 'admin_api_tokens.account_id')
        .where('admin_api_tokens.token_digest', '=', digest(token))
        .where('admin_api_tokens.revoked_at', 'is', null)
        .where('accounts.role', '=', 'admin')
        .where('accounts.disabled_at', 'is', null)
        .returning(['admin_api_tokens.account_id', 'admin_api_tokens.name', 'accounts.email'])
        .executeTakeFirst();
      return row && { accountId: row.account_id, email: row.email, tokenName: row.name };
    },
  };
}

export type ApiTokens = ReturnType<typeof createApiTokens>;
