/**
 * Opens the database: PostgreSQL through `pg` when a URL is given, otherwise the embedded PGlite
 * persisted under a data folder (or in memory, for tests).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Kysely, PostgresDialect, type LogEvent } from 'kysely';
import pg from 'pg';
import { requestContext } from '../http/request-context.ts';
import { DatabaseTimeoutError } from './errors.ts';
import { PGliteDialect } from './pglite-dialect.ts';
import type { Database } from './schema.ts';

export type DB = Kysely<Database>;

/**
 * Statements that start with this comment are sent as named prepared statements on `pg`: parsed and
 * planned once per connection instead of once per request (PostgreSQL switches them to a generic
 * plan after five executions). For the hot path only — the token request's read-ahead and write
 * statements — whose text does not vary with the data.
 */
export const PREPARE = '/* prepare */';

/**
 * Set in a request's memo once the database has not answered it in time: whatever else that request
 * asks of the database (oidc-provider's error handling looks the client up again to decide where
 * the error may be sent) fails at once, so one request waits for one bound, not one per statement.
 */
const TIMED_OUT = 'database:timed-out';
const timedOutInThisRequest = () => requestContext()?.memo.has(TIMED_OUT) ?? false;
function timedOutError(message: string, cause?: unknown): DatabaseTimeoutError {
  requestContext()?.memo.set(TIMED_OUT, true);
  return new DatabaseTimeoutError(message, cause === undefined ? undefined : { cause });
}

/**
 * No late commits (issue 14 §2). A request that Gatehouse answered with an error (a statement past
 * the bound is a 503) or gave up on (cut at shutdown) must never commit afterwards; yet a frozen
 * PostgreSQL that resumes still finds the COMMIT, or the one-statement batch, in its socket and runs
 * it. So every commit carries its deadline in the database's own clock, checked by the database as
 * the very last step (`gatehouse_commit_by`, migration 0010): a commit that comes too late fails
 * instead. The deadline is derived without trusting the two clocks to agree: from a timestamp the
 * database produced (`transaction_timestamp()` for an explicit transaction, the read-ahead's
 * `clock_timestamp()` for a batch) and the time Gatehouse received it, which is never earlier. Past
 * the deadline the earliest moment Gatehouse could answer an error is still {@link commitMarginMs}
 * away, so "answered 503" and "committed" cannot both happen. What remains is a freeze that lands
 * in the microseconds between that check and the commit record: then the answer is lost, not
 * wrong, and rotation grace (oidc/rotation-grace.ts) lets the client recover.
 */
interface Bounds {
  /** GATEHOUSE_DATABASE_TIMEOUT, ms. */
  timeoutMs: number;
  /** performance.now() after which nothing may commit (the drain's cut-off at shutdown); Infinity until then. */
  giveUpAtMs: number;
}

/** How much earlier than the bound a commit must be in: timer slack, event-loop lag, the check itself. */
export function commitMarginMs(timeoutMs: number): number {
  return Math.min(1000, Math.max(50, Math.floor(timeoutMs / 4)));
}

/** Milliseconds from now within which a write sent now must commit, or undefined when nothing bounds it. */
function commitBudgetMs(limits: Bounds | undefined): number | undefined {
  if (!limits) return undefined;
  const now = performance.now();
  return Math.min(limits.timeoutMs, limits.giveUpAtMs - now) - commitMarginMs(limits.timeoutMs);
}

/** The bounds of each bounded database, for {@link batchCommitDeadline}. */
const bounds = new WeakMap<DB, Bounds>();

const CLOCK = 'database:clock';

/** Records a `clock_timestamp()` the database just returned (epoch ms), as the anchor of {@link batchCommitDeadline}. */
export function noteDatabaseClock(databaseNowMs: number): void {
  requestContext()?.memo.set(CLOCK, { database: databaseNowMs, local: performance.now() });
}

/**
 * The deadline (epoch ms, in the database's clock) for a one-statement batch sent now on `db`, or
 * undefined when it is not bounded (the embedded database, no timeout) or no anchor was read in
 * this request. The database's clock read `anchor.database` no later than we received it
 * (`anchor.local`), so `anchor.database + (now - anchor.local)` is never behind the database's real
 * time now: the deadline errs on the early side.
 */
export function batchCommitDeadline(db: DB): number | undefined {
  const budget = commitBudgetMs(bounds.get(db));
  const anchor = requestContext()?.memo.get(CLOCK) as { database: number; local: number } | undefined;
  if (budget === undefined || !anchor) return undefined;
  return anchor.database + (performance.now() - anchor.local) + budget;
}

/** Kysely's migrator waits for this session-level lock (another instance may be migrating). */
const SESSION_LOCK = /\bpg_advisory_lock\s*\(/i;

/**
 * A `pg` pool whose clients send {@link PREPARE}-marked statements by name and, with a `timeoutMs`,
 * never keep a request waiting longer than that for an answer (issue 7 §4: a database that hangs,
 * or a network that drops packets instead of refusing them, is a 503 within a bound, not a hang).
 *
 * A statement past the bound fails with {@link DatabaseTimeoutError} and its connection is closed
 * at once: the statement may still be running, or sitting unread in a stalled server's socket, so
 * the connection cannot be lent to anyone else; closing it also makes PostgreSQL roll back a
 * transaction left open on it. Whatever runs next on that checkout (Kysely's ROLLBACK) fails fast
 * instead of waiting out a second bound, and the release tells the pool to drop the client, so a
 * timed-out connection never comes back to the pool: once PostgreSQL answers again, the pool simply
 * opens fresh ones.
 *
 * Not bounded: a connection that waits for a session advisory lock (Kysely's migration lock) and
 * what runs on it until it is released: migrations may legitimately run long, or wait for another
 * instance's, and they run before anything is served.
 */
function boundedPool(pool: pg.Pool, limits: Bounds | undefined) {
  const timeoutMs = limits?.timeoutMs;
  type Client = pg.PoolClient;
  const named = (text: string) => `gh_${createHash('sha1').update(text).digest('hex').slice(0, 20)}`;
  const wrap = (client: Client) => {
    let timedOut = false;
    let unbounded = false;
    /** performance.now() when PostgreSQL answered this checkout's BEGIN, while a transaction is open. */
    let beganAt: number | undefined;
    // pg emits 'error' on a client whose connection fails (the server shutting down sends a FATAL
    // and closes it) even when no statement is in flight, e.g. between a transaction's statements.
    // The pool listens only while a client is idle; unheard, the event would crash the process.
    // The client is then not queryable: its next statement fails fast and the pool drops it on release.
    const onError = () => {};
    client.on('error', onError);
    const send = (text: string, values?: unknown[]) =>
      text.startsWith(PREPARE) ? client.query({ name: named(text), text, values: values as unknown[] }) : client.query(text, values);
    return {
      query(text: string, values?: unknown[]) {
        if (timedOut) return Promise.reject(new DatabaseTimeoutError('the connection was discarded: an earlier statement on it timed out'));
        if (SESSION_LOCK.test(text) && !unbounded) {
          unbounded = true;
          // Migrations may legitimately run long: lift the server-side bounds on this connection (it
          // is discarded on release, so nobody else gets it unbounded).
          if (timeoutMs) return send('SET statement_timeout = 0; SET lock_timeout = 0; SET idle_in_transaction_session_timeout = 0').then(() => send(text, values));
        }
        if (!timeoutMs || unbounded) return send(text, values);
        if (timedOutInThisRequest()) return Promise.reject(new DatabaseTimeoutError('the database did not answer earlier in this request'));
        const verb = /^\s*(\w+)/.exec(text)?.[1]?.toLowerCase();
        if (verb === 'commit' && beganAt !== undefined && !values?.length) {
          // The transaction's deadline, checked by PostgreSQL in the same message as COMMIT: in the
          // simple protocol an error skips the rest, and the transaction stays aborted (then rolled back).
          const budget = commitBudgetMs(limits)!;
          const sinceBegin = performance.now() - beganAt;
          beganAt = undefined;
          text = `SELECT gatehouse_commit_by(transaction_timestamp() + make_interval(secs => ${((sinceBegin + budget) / 1000).toFixed(3)})); ${text}`;
        } else if (verb === 'rollback' || verb === 'commit') beganAt = undefined;
        const opening = verb === 'begin' || verb === 'start';
        return new Promise((resolve, reject) => {
          const timer = setTimeout(() => {
            timedOut = true;
            // With a statement in flight, end() destroys the socket rather than waiting for the server.
            client.end().catch(() => {});
            reject(timedOutError(`the database did not answer within ${timeoutMs} ms`));
          }, timeoutMs);
          send(text, values).then(
            (result) => {
              clearTimeout(timer);
              if (opening) beganAt = performance.now();
              // A deadline-checked COMMIT answers two results: Kysely wants the COMMIT's.
              resolve(Array.isArray(result) ? result[result.length - 1] : result);
            },
            (err: unknown) => {
              clearTimeout(timer);
              reject(err);
            },
          );
        });
      },
      release: (err?: Error | boolean) => {
        client.removeListener('error', onError);
        client.release(err || timedOut || (unbounded && Boolean(timeoutMs)));
      },
    } as unknown as Client;
  };
  return {
    async connect() {
      if (timeoutMs && timedOutInThisRequest()) throw new DatabaseTimeoutError('the database did not answer earlier in this request');
      try {
        return wrap(await pool.connect());
      } catch (err) {
        // pg-pool's two ways of saying connectionTimeoutMillis passed: no free connection in time, or
        // a new one that did not finish its start-up in time (a stalled server still accepts TCP).
        if (timeoutMs && /timeout exceeded when trying to connect|Connection terminated due to connection timeout/.test((err as Error).message)) {
          throw timedOutError(`no database connection within ${timeoutMs} ms`, err);
        }
        throw err;
      }
    },
    end: () => pool.end(),
  };
}

export interface OpenDatabaseOptions {
  /** PostgreSQL connection string; when absent the embedded database is used. */
  url?: string | undefined;
  /** Folder for the embedded database; `memory://` keeps it in memory. */
  dataDir?: string | undefined;
  poolSize?: number;
  /** Called once per SQL statement sent (used to count round trips). */
  onQuery?: (sql: string) => void;
  /**
   * PostgreSQL only: the longest, in milliseconds, to wait for a connection (a new one, or a free
   * one from a full pool) and for each statement's answer (GATEHOUSE_DATABASE_TIMEOUT). Past it the
   * work fails with {@link DatabaseTimeoutError}, which the error mapping answers with 503. Unset:
   * no bound (`gatehouse migrate`, whose statements may legitimately run long).
   */
  timeoutMs?: number | undefined;
}

/** How a `pg` pool is used right now (for metrics). */
export interface PoolStats {
  /** Connections open (idle or lent out). */
  total: number;
  idle: number;
  /** Requests queued for a connection. */
  waiting: number;
  max: number;
}

export interface DatabaseHandle {
  db: DB;
  kind: 'postgres' | 'pglite';
  /**
   * From now on nothing may commit after `atMs` (performance.now() time): the drain's cut-off at
   * shutdown, after which requests still running are cut without an answer. Bounded PostgreSQL only.
   */
  giveUpAt?: (atMs: number) => void;
  /** PostgreSQL only: the connection pool's use. */
  poolStats?: () => PoolStats;
  close(): Promise<void>;
}

export async function openDatabase(options: OpenDatabaseOptions): Promise<DatabaseHandle> {
  const log = options.onQuery
    ? (event: LogEvent) => options.onQuery!(event.query.sql)
    : undefined;

  if (options.url) {
    const max = options.poolSize ?? 10;
    const pool = new pg.Pool({
      connectionString: options.url,
      max,
      // Bounded on both sides: the client gives up after the bound (boundedPool), and PostgreSQL
      // itself cancels a statement or a lock wait past it and ends a transaction left idle, so an
      // abandoned request (its instance killed, its connection cut) never holds locks for long.
      ...(options.timeoutMs
        ? {
            connectionTimeoutMillis: options.timeoutMs,
            statement_timeout: options.timeoutMs,
            lock_timeout: options.timeoutMs,
            idle_in_transaction_session_timeout: 2 * options.timeoutMs,
          }
        : {}),
      // Keepalive probes let the kernel notice a peer that vanished without a word (host gone, a
      // firewall that forgot the connection), which would otherwise look alive until written to.
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
    });
    // An idle client that errors (e.g. the server restarted) must not crash the process; the pool
    // has already dropped it.
    pool.on('error', () => {});
    const limits: Bounds | undefined = options.timeoutMs ? { timeoutMs: options.timeoutMs, giveUpAtMs: Number.POSITIVE_INFINITY } : undefined;
    const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: boundedPool(pool, limits) as unknown as pg.Pool }), ...(log ? { log } : {}) });
    if (limits) bounds.set(db, limits);
    return {
      db,
      kind: 'postgres',
      ...(limits ? { giveUpAt: (atMs: number) => void (limits.giveUpAtMs = Math.min(limits.giveUpAtMs, atMs)) } : {}),
      poolStats: () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount, max }),
      close: () => db.destroy(),
    };
  }

  const { PGlite } = await import('@electric-sql/pglite');
  const dataDir = options.dataDir ?? './data';
  let client;
  let unlock = () => {};
  if (dataDir.startsWith('memory://')) {
    client = new PGlite(dataDir);
  } else {
    const dir = path.resolve(dataDir, 'pglite');
    mkdirSync(dir, { recursive: true });
    unlock = lockDataDir(path.resolve(dataDir));
    client = new PGlite(dir);
  }
  const db = new Kysely<Database>({ dialect: new PGliteDialect(client), ...(log ? { log } : {}) });
  return {
    db,
    kind: 'pglite',
    async close() {
      await db.destroy();
      unlock();
    },
  };
}

export class DatabaseInUseError extends Error {
  readonly code = 'database_in_use';
}

/**
 * The embedded database belongs to one process at a time; a second one would corrupt it. A lock
 * file holds the owner's pid; a stale lock (its process is gone) is taken over.
 */
function lockDataDir(dir: string): () => void {
  const file = path.join(dir, 'gatehouse.lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, String(process.pid), { flag: 'wx' });
      return () => rmSync(file, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number(readFileSync(file, 'utf8'));
      if (pid && pid !== process.pid && isAlive(pid)) {
        throw new DatabaseInUseError(
          `the embedded database in ${dir} is in use by another Gatehouse process (pid ${pid}). ` +
            'Stop it first, or use PostgreSQL (DATABASE_URL), which several processes can share.',
        );
      }
      rmSync(file, { force: true });
    }
  }
  throw new DatabaseInUseError(`could not lock the embedded database in ${dir}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
