/**
 * Fixed-window rate limits with counters in PostgreSQL, so that a limit holds across instances.
 * One statement per hit: the counter restarts when its window has passed.
 */
import { sql } from 'kysely';
import type { DB } from '../db/database.ts';
import { current } from '../db/unit-of-work.ts';

export interface RateLimitResult {
  allowed: boolean;
  /** Seconds until the window restarts (0 when allowed). */
  retryAfter: number;
}

export function createRateLimiter(db: DB) {
  return {
    /** Counts one hit on `key`; allowed while the window holds at most `limit` hits. */
    async hit(key: string, limit: number, windowSeconds: number): Promise<RateLimitResult> {
      const window = sql<Date>`make_interval(secs => ${windowSeconds})`;
      // In the request's transaction when there is one (PGlite has a single connection).
      const row = await current(db)
        .insertInto('rate_limit_counters')
        .values({ key, window_start: sql<Date>`now()`, hits: 1 })
        .onConflict((oc) =>
          oc.column('key').doUpdateSet({
            hits: sql<number>`CASE WHEN rate_limit_counters.window_start <= now() - ${window} THEN 1 ELSE rate_limit_counters.hits + 1 END`,
            window_start: sql<Date>`CASE WHEN rate_limit_counters.window_start <= now() - ${window} THEN now() ELSE rate_limit_counters.window_start END`,
          }),
        )
        .returning(['hits', sql<number>`ceil(extract(epoch from window_start + ${window} - now()))::int`.as('remaining')])
        .executeTakeFirstOrThrow();
      return row.hits <= limit ? { allowed: true, retryAfter: 0 } : { allowed: false, retryAfter: Math.max(1, row.remaining) };
    },
  };
}

export type RateLimiter = ReturnType<typeof createRateLimiter>;
