/**
 * Lockout with backoff after failed sign-ins (admin console and user sign-in alike), per account
 * and per source address, kept in
 * PostgreSQL so every instance sees the same counters. The first FREE_FAILURES failures cost
 * nothing; each further one doubles the wait, from 30 seconds up to an hour. An address (which
 * may be a whole office behind one NAT) gets FREE_FAILURES_PER_ADDRESS before the same schedule.
 * A success clears the account's counter (not the address's: one right password must not clear a
 * spraying address).
 */
import { sql } from 'kysely';
import type { DB } from '../db/database.ts';

export const FREE_FAILURES = 5;
export const FREE_FAILURES_PER_ADDRESS = 20;
const BASE_SECONDS = 30;
const MAX_SECONDS = 3600;

export function lockoutSeconds(failures: number, free = FREE_FAILURES): number {
  if (failures < free) return 0;
  return Math.min(MAX_SECONDS, BASE_SECONDS * 2 ** (failures - free));
}

export function createSignInThrottle(db: DB) {
  return {
    /** Seconds until any of these keys may try again (0: now). */
    async retryAfter(keys: string[]): Promise<number> {
      const rows = await db
        .selectFrom('sign_in_attempts')
        .select(sql<number>`ceil(extract(epoch from locked_until - now()))::int`.as('seconds'))
        .where('key', 'in', keys)
        .where('locked_until', '>', sql<Date>`now()`)
        .execute();
      return Math.max(0, ...rows.map((r) => r.seconds));
    },

    async failed(keys: string[]): Promise<void> {
      for (const key of keys) {
        const row = await db
          .insertInto('sign_in_attempts')
          .values({ key, failures: 1 })
          .onConflict((oc) => oc.column('key').doUpdateSet({ failures: sql`sign_in_attempts.failures + 1`, updated_at: sql`now()` }))
          .returning('failures')
          .executeTakeFirstOrThrow();
        const seconds = lockoutSeconds(row.failures, key.includes('-ip:') ? FREE_FAILURES_PER_ADDRESS : FREE_FAILURES);
        if (seconds > 0) {
          await db
            .updateTable('sign_in_attempts')
            .set({ locked_until: sql<Date>`now() + make_interval(secs => ${seconds})` })
            .where('key', '=', key)
            .execute();
        }
      }
    },

    async succeeded(key: string): Promise<void> {
      await db.deleteFrom('sign_in_attempts').where('key', '=', key).execute();
    },
  };
}

export type SignInThrottle = ReturnType<typeof createSignInThrottle>;
