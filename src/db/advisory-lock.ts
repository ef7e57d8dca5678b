/**
 * "One of many instances at a time" for background work (the janitor, the audit sealer), through a PostgreSQL
 * session-level advisory lock held on a connection of its own for the duration of the work:
 * - the lock lives outside the app's pool, so the work can use every pooled connection (and a
 *   pool of one cannot deadlock on it);
 * - if the holder dies or its connection drops, PostgreSQL releases the lock with the session, so
 *   a crashed instance never blocks housekeeping for the others;
 * - `pg_try_advisory_lock` never waits: an instance that finds it taken skips this round.
 * The embedded database has no lock: one process owns it (see lockDataDir in database.ts).
 */
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';

/** Advisory-lock keys: one bigint per kind of background work, in one place so none collide. */
export const ADVISORY_LOCKS = {
  /** "gatehous" in ASCII */
  janitor: 0x67617465686f7573n,
  /** "ghauditS": the audit sealer (src/audit/sealer.ts) */
  auditSealer: 0x6768617564697453n,
} as const;

export type LockOutcome<T> = { acquired: true; value: T } | { acquired: false };

export async function withAdvisoryLock<T>(
  databaseUrl: string | undefined,
  key: bigint,
  work: () => Promise<T>,
  options: { timeoutMs?: number } = {},
): Promise<LockOutcome<T>> {
  if (!databaseUrl) return { acquired: true, value: await work() };
  const timeout = options.timeoutMs ?? 5000;
  // Bounded like the app's statements: on a hung database the round fails instead of waiting.
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 1, connectionTimeoutMillis: timeout, query_timeout: timeout });
  pool.on('error', () => {}); // a dropped lock connection must not crash the process; the lock goes with it
  const lockDb = new Kysely<unknown>({ dialect: new PostgresDialect({ pool }) });
  try {
    // One checked-out connection for the whole run: the lock belongs to its session.
    return await lockDb.connection().execute(async (session) => {
      const { rows } = await sql<{ acquired: boolean }>`SELECT pg_try_advisory_lock(${key}) AS acquired`.execute(session);
      if (!rows[0]?.acquired) return { acquired: false } as const;
      try {
        return { acquired: true, value: await work() } as const;
      } finally {
        await sql`SELECT pg_advisory_unlock(${key})`.execute(session).catch(() => {});
      }
    });
  } finally {
    await lockDb.destroy();
  }
}
