/**
 * Request-scoped transactions. A token request reads a code or refresh token, consumes it and
 * stores its successor; running those statements in one transaction means that a failure half-way
 * (a database error, an invalid `resource`) rolls back the consumption, so the client can retry
 * with the same refresh token instead of being treated as a replay (OAuth 2.1 §4.3.1; RFC 9700
 * §4.14.2 asks for reuse detection, not for burning tokens on server faults).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { CompiledQuery, type Compilable, type ControlledTransaction, type KyselyPlugin } from 'kysely';
import { batchCommitDeadline, PREPARE, type DB } from './database.ts';
import type { Database } from './schema.ts';

/** A write held back until the end of a deferred unit of work (see {@link inDeferredUnitOfWork}). */
interface QueuedWrite {
  query: CompiledQuery;
  /** The write must touch a row (its query RETURNs them), or the whole batch is refused with this message. */
  gate?: string | undefined;
  /** Receives the rows the write RETURNs, once it has run. */
  onRows?: ((rows: Record<string, unknown>[]) => void) | undefined;
  /** An audit row (audit rows only append, migration 0009: any number may share a statement). */
  audit?: boolean | undefined;
}

/** A batch was refused because a gated write touched no row (e.g. a concurrent redemption won). */
export class WriteGateError extends Error {
  override readonly name = 'WriteGateError';
}

export interface UnitOfWork {
  /** The transaction (immediate units of work). */
  trx?: ControlledTransaction<Database> | undefined;
  /** Writes held back to run in one statement at the end (deferred units of work). */
  deferred?: QueuedWrite[] | undefined;
  /** Set when something was revoked (reuse detection): that must be kept even if the request fails. */
  revoked: boolean;
  /**
   * Grants this work revokes or consumes under, and how it locks each: the grant row is the first
   * lock any token write takes (docs/security.md "Lock order"). `update` for a revocation, which
   * deletes the grant; `share` for a redemption, which must not outlive a concurrent revocation.
   */
  grantLocks: Map<string, 'share' | 'update'>;
  /** Run after a successful commit (e.g. streaming audit events): never for rolled-back work. */
  afterCommit: Array<() => void>;
}

const storage = new AsyncLocalStorage<UnitOfWork>();

/** Refuses every statement but a read: writes in a deferred unit of work must go through {@link write}. */
const readOnlyPlugin: KyselyPlugin = {
  transformQuery(args) {
    if (args.node.kind !== 'SelectQueryNode' && args.node.kind !== 'RawNode') {
      throw new Error(`a ${args.node.kind} ran directly inside a deferred unit of work: route it through write()`);
    }
    return args.node;
  },
  async transformResult(args) {
    return args.result;
  },
};
const readOnly = new WeakMap<DB, DB>();

/**
 * The executor to use now: the request's transaction when there is one; in a deferred unit of
 * work, the database for reads only; else the database.
 */
export function current(db: DB): DB {
  const uow = storage.getStore();
  if (uow?.trx) return uow.trx as unknown as DB;
  if (uow?.deferred) {
    let guarded = readOnly.get(db);
    if (!guarded) readOnly.set(db, (guarded = db.withPlugin(readOnlyPlugin)));
    return guarded;
  }
  return db;
}

/**
 * Runs a write now (in the current transaction, if any) and returns the rows it RETURNs; or, in a
 * deferred unit of work, queues it and returns undefined (its rows go to `onRows` when it runs).
 * A `gate` write must RETURN the rows it touched: when it runs now the caller checks them; when it
 * is queued, touching none refuses the whole batch.
 */
export async function write(
  db: DB,
  build: (executor: DB) => Compilable & { execute(): Promise<unknown> },
  options: { gate?: string; onRows?: (rows: Record<string, unknown>[]) => void; audit?: boolean } = {},
): Promise<Record<string, unknown>[] | undefined> {
  const uow = storage.getStore();
  if (uow?.deferred) {
    uow.deferred.push({ query: build(db).compile(), gate: options.gate, onRows: options.onRows, audit: options.audit });
    return undefined;
  }
  const result = await build(current(db)).execute();
  return Array.isArray(result) ? (result as Record<string, unknown>[]) : [];
}

/** Like {@link write}, for a statement compiled already (e.g. {@link grantLockQuery}). */
export async function writeCompiled(
  db: DB,
  query: CompiledQuery,
  options: { gate?: string; onRows?: (rows: Record<string, unknown>[]) => void } = {},
): Promise<Record<string, unknown>[] | undefined> {
  const uow = storage.getStore();
  if (uow?.deferred) {
    uow.deferred.push({ query, gate: options.gate, onRows: options.onRows });
    return undefined;
  }
  const { rows } = await current(db).executeQuery(query);
  return rows as Record<string, unknown>[];
}

export function currentUnitOfWork(): UnitOfWork | undefined {
  return storage.getStore();
}

/**
 * Runs `work` in one transaction. It commits when `succeeded()` says so after `work` returns, or
 * when something was revoked; otherwise (and when `work` throws) it rolls back.
 */
export async function inUnitOfWork<T>(db: DB, work: () => Promise<T>, succeeded: (result: T) => boolean): Promise<T> {
  if (storage.getStore()) return work();
  const trx = await db.startTransaction().execute();
  const uow: UnitOfWork = { trx, revoked: false, grantLocks: new Map(), afterCommit: [] };
  let result: T;
  try {
    result = await storage.run(uow, work);
  } catch (err) {
    if (uow.revoked) await commit(uow);
    else await trx.rollback().execute();
    throw err;
  }
  if (succeeded(result) || uow.revoked) await commit(uow);
  else await trx.rollback().execute();
  return result;
}

/**
 * Like {@link inUnitOfWork}, with the writes held back and sent at the end in ONE statement
 * (data-modifying CTEs: atomic on their own, no BEGIN/COMMIT round trips). Reads go straight to the
 * database (a token request's reads were read ahead: oidc/token-prefetch.ts). A gated write that
 * touches no row aborts the statement, and `refused()` turns the answer into an error. Only for work
 * whose every write goes through {@link write}: anything else is refused loudly (read-only executor).
 */
export async function inDeferredUnitOfWork<T>(db: DB, work: () => Promise<T>, succeeded: (result: T) => boolean, refused: (error: WriteGateError) => void): Promise<T> {
  if (storage.getStore()) return work();
  const uow: UnitOfWork = { deferred: [], revoked: false, grantLocks: new Map(), afterCommit: [] };
  let result: T;
  try {
    result = await storage.run(uow, work);
  } catch (err) {
    if (uow.revoked) await flush(db, uow);
    throw err;
  }
  if (succeeded(result) || uow.revoked) {
    try {
      await flush(db, uow);
    } catch (err) {
      if (!(err instanceof WriteGateError)) throw err;
      refused(err);
    }
  }
  return result;
}

const GATE_FAILED = 'GH001';

/**
 * Locks grant rows, in one order (by id), ahead of everything else the work writes: a revocation
 * takes them FOR UPDATE before it deletes a single token, so it never holds a token row that a
 * redemption (which takes its grant FOR KEY SHARE first) waits for while waiting for that grant.
 */
export function grantLockQuery(grantIds: string[], mode: 'share' | 'update'): CompiledQuery {
  const ids = [...grantIds].sort();
  return CompiledQuery.raw(
    `SELECT id FROM oidc_payloads WHERE model = 'Grant' AND id = ANY($1::text[]) ORDER BY id FOR ${mode === 'update' ? 'UPDATE' : 'KEY SHARE'}`,
    [ids],
  );
}

async function flush(db: DB, uow: UnitOfWork): Promise<void> {
  const queue = uow.deferred!;
  if (queue.length === 0) return runHooks(uow);
  const revoking = [...uow.grantLocks].filter(([, mode]) => mode === 'update').map(([id]) => id);
  if (revoking.length > 0) {
    // A revocation (rare: reuse detection) runs as a transaction whose first statement locks the
    // grants it deletes, whatever order oidc-provider asked for the deletions in. It is kept even if
    // a gate finds nothing: the revocation is what matters.
    await inUnitOfWork(db, async () => {
      if (revoking.length) await current(db).executeQuery(grantLockQuery(revoking, 'update'));
      for (const q of queue) {
        const { rows } = await current(db).executeQuery(q.query);
        if (q.gate && rows.length === 0 && !revoking.length) throw new WriteGateError(q.gate);
        q.onRows?.(rows as Record<string, unknown>[]);
      }
    }, () => true);
    return runHooks(uow);
  }
  const parameters: unknown[] = [];
  const ctes: string[] = [];
  const selects: string[] = [];
  const deadline = batchCommitDeadline(db);
  queue.forEach((q, i) => {
    const offset = parameters.length;
    let text = q.query.sql.replace(/\$(\d+)/g, (_m, n: string) => `$${Number(n) + offset}`);
    // With a deadline every part is counted before it is checked, and a CTE is counted by its RETURNING.
    if (deadline !== undefined && /^\s*(insert|update|delete)\b/i.test(text) && !/\breturning\b/i.test(text)) text += ' returning 1';
    ctes.push(`w${i} AS (${text})`);
    parameters.push(...q.query.parameters);
    if (q.gate) {
      parameters.push(q.gate);
      selects.push(`gatehouse_assert(EXISTS (SELECT 1 FROM w${i}), $${parameters.length}) AS g${i}`);
    }
    if (q.onRows) selects.push(`(SELECT coalesce(json_agg(w${i}), '[]'::json) FROM w${i}) AS r${i}`);
  });
  // Last, once every part has run (each is counted): too late to commit means nothing commits
  // (database.ts, "No late commits"). The gates come first, in queue order: the grant's lock is
  // the first write queued, so it is the first lock taken.
  if (deadline !== undefined) {
    parameters.push(deadline / 1000);
    const counted = queue.map((_q, i) => `(SELECT count(*) FROM w${i})`).join(' + ');
    selects.push(`gatehouse_commit_by(to_timestamp($${parameters.length}::float8), ${counted}) AS in_time`);
  }
  let row: Record<string, unknown>;
  try {
    // Prepared by name: a token request's batch has the same text every time.
    const { rows } = await db.executeQuery(CompiledQuery.raw(`${PREPARE} WITH ${ctes.join(', ')} SELECT ${selects.join(', ') || '1 AS done'}`, parameters));
    row = rows[0] as Record<string, unknown>;
  } catch (err) {
    if ((err as { code?: string }).code === GATE_FAILED) throw new WriteGateError((err as Error).message);
    throw err;
  }
  queue.forEach((q, i) => q.onRows?.((row[`r${i}`] as Record<string, unknown>[] | undefined) ?? []));
  runHooks(uow);
}

async function commit(uow: UnitOfWork): Promise<void> {
  try {
    await uow.trx!.commit().execute();
  } catch (err) {
    // Kysely gives the connection back after a failed COMMIT only when PostgreSQL answered it with
    // ROLLBACK. A COMMIT that failed otherwise (the connection cut or timed out, a deferred
    // constraint) would keep it lent out for good, and each outage would shrink the pool until no
    // request could get a connection. ROLLBACK releases it whatever happens (failing fast on a dead
    // connection, which the pool then drops).
    await uow.trx!.rollback().execute().catch(() => {});
    throw err;
  }
  runHooks(uow);
}

function runHooks(uow: UnitOfWork): void {
  for (const hook of uow.afterCommit) {
    try {
      hook();
    } catch {
      // A hook's failure must not turn a committed request into an error.
    }
  }
}

/** Runs `hook` once the current transaction commits, or now when there is none. */
export function onCommit(hook: () => void): void {
  const uow = storage.getStore();
  if (uow) uow.afterCommit.push(hook);
  else hook();
}

/** Runs `work` in one transaction: all of it, or (when it throws) none of it. */
export function inTransaction<T>(db: DB, work: () => Promise<T>): Promise<T> {
  return inUnitOfWork(db, work, () => true);
}
