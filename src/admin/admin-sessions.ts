/**
 * Admin console sessions: a random cookie value whose SHA-256 digest is the row id, a CSRF token
 * per session, an idle timeout of one hour and an absolute lifetime of twelve hours. Only active
 * accounts with the admin role have sessions.
 */
import { createHash, randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import type { DB } from '../db/database.ts';

const IDLE_SECONDS = 3600;
const ABSOLUTE_SECONDS = 12 * 3600;

export interface AdminSession {
  accountId: string;
  email: string;
  csrf: string;
}

const digest = (token: string) => createHash('sha256').update(token).digest('base64url');

export function createAdminSessions(db: DB) {
  return {
    /** Starts a session; returns the cookie value (never stored) and the session. */
    async create(accountId: string): Promise<{ token: string; csrf: string }> {
      const token = randomBytes(32).toString('base64url');
      const csrf = randomBytes(32).toString('base64url');
      await db
        .insertInto('admin_sessions')
        .values({ id: digest(token), account_id: accountId, csrf_token: csrf, expires_at: sql<Date>`now() + make_interval(secs => ${IDLE_SECONDS})` })
        .execute();
      return { token, csrf };
    },

    /** The live session for a cookie value, sliding its idle timeout; undefined otherwise. */
    async find(token: string | undefined): Promise<AdminSession | undefined> {
      if (!token || token.length > 100) return undefined;
      const row = await db
        .updateTable('admin_sessions')
        .set({
          last_seen_at: sql<Date>`now()`,
          expires_at: sql<Date>`least(admin_sessions.created_at + make_interval(secs => ${ABSOLUTE_SECONDS}), now() + make_interval(secs => ${IDLE_SECONDS}))`,
        })
        .from('accounts')
        .whereRef('accounts.id', '=', 'admin_sessions.account_id')
        .where('admin_sessions.id', '=', digest(token))
        .where('admin_sessions.expires_at', '>', sql<Date>`now()`)
        .where('accounts.role', '=', 'admin')
        .where('accounts.disabled_at', 'is', null)
        .returning(['admin_sessions.account_id', 'admin_sessions.csrf_token', 'accounts.email'])
        .executeTakeFirst();
      return row && { accountId: row.account_id, email: row.email, csrf: row.csrf_token };
    },

    async destroy(token: string | undefined): Promise<void> {
      if (token) await db.deleteFrom('admin_sessions').where('id', '=', digest(token)).execute();
    },
  };
}

export type AdminSessions = ReturnType<typeof createAdminSessions>;
