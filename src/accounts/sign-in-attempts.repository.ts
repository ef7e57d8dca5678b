/**
 * The `sign_in_attempts` table: one counter per throttle key, shared by
 * every instance. A counter counts attempts *reserved* before their password is verified, so that
 * parallel requests cannot all read "not locked" and then all run argon2 (issue 15 §2,
 * docs/security.md I-36).
 *
 * Does not decide which keys an attempt takes, or what a budget is worth: that is the throttle's
 * policy (sign-in-throttle.ts).
 */
import { sql } from 'kysely';
import type { DB } from '../db/database.ts';

/** How many attempts a key allows before it backs off, and how long the backoff is. */
export interface AttemptBudget {
  /** Attempts that cost nothing; the one that reaches this number starts the first wait. */
  free: number;
  /** The first wait, doubled for each further attempt. */
  baseSeconds: number;
  /** The longest wait. */
  maxSeconds: number;
}

/** The wait that the `attempts`-th reserved attempt starts (0: none). */
export function backoffSeconds(attempts: number, budget: AttemptBudget): number {
  if (attempts < budget.free) return 0;
  return Math.min(budget.maxSeconds, budget.baseSeconds * 2 ** Math.min(30, attempts - budget.free));
}

export function createSignInAttemptsRepository(db: DB) {
  return {
    /**
     * Counts one attempt against `key`, in one conditional UPSERT: the row is locked while it is
     * updated, and the condition (no wait running) is evaluated against the latest committed row,
     * so of any number of concurrent calls exactly those within the budget succeed. The attempt
     * that reaches the budget starts its wait at once, before its password is known to be wrong.
     * True when the attempt may go ahead; false (nothing counted) while a wait is running.
     */
    async reserve(key: string, budget: AttemptBudget): Promise<boolean> {
      const first = backoffSeconds(1, budget);
      const exponent = sql<number>`least(30, sign_in_attempts.failures + 1 - ${budget.free})`;
      const row = await db
        .insertInto('sign_in_attempts')
        .values({ key, failures: 1, locked_until: first > 0 ? sql<Date>`now() + make_interval(secs => ${first})` : null })
        .onConflict((oc) =>
          oc
            .column('key')
            .doUpdateSet({
              failures: sql`sign_in_attempts.failures + 1`,
              locked_until: sql<Date | null>`CASE WHEN sign_in_attempts.failures + 1 >= ${budget.free}
                THEN now() + make_interval(secs => least(${budget.maxSeconds}::float8, ${budget.baseSeconds}::float8 * power(2::float8, ${exponent})))
                ELSE NULL END`,
              updated_at: sql`now()`,
            })
            .where((eb) => eb.or([eb('sign_in_attempts.locked_until', 'is', null), eb('sign_in_attempts.locked_until', '<=', sql<Date>`now()`)])),
        )
        .returning('failures')
        .executeTakeFirst();
      return row !== undefined;
    },

    /**
     * Gives one reserved attempt back (it succeeded, or another key refused it), and ends the wait
     * if the counter drops below the budget again.
     */
    async release(key: string, budget: AttemptBudget): Promise<void> {
      await db
        .updateTable('sign_in_attempts')
        .set({
          failures: sql`greatest(sign_in_attempts.failures - 1, 0)`,
          locked_until: sql<Date | null>`CASE WHEN sign_in_attempts.failures - 1 < ${budget.free} THEN NULL ELSE sign_in_attempts.locked_until END`,
        })
        .where('key', '=', key)
        .execute();
    },

    /** Forgets a key (a successful sign-in clears its own account-and-address or device counter). */
    async clear(key: string): Promise<void> {
      await db.deleteFrom('sign_in_attempts').where('key', '=', key).execute();
    },

    /** Seconds until every one of these keys may be tried again (0: now). */
    async retryAfter(keys: string[]): Promise<number> {
      if (keys.length === 0) return 0;
      const rows = await db
        .selectFrom('sign_in_attempts')
        .select(sql<number>`ceil(extract(epoch from locked_until - now()))::int`.as('seconds'))
        .where('key', 'in', keys)
        .where('locked_until', '>', sql<Date>`now()`)
        .execute();
      return Math.max(0, ...rows.map((r) => r.seconds));
    },
  };
}

export type SignInAttemptsRepository = ReturnType<typeof createSignInAttemptsRepository>;
