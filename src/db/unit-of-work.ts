/**
 * Request-scoped transactions. A token request reads a code or refresh token, consumes it and
 * stores its successor; running those statements in one transaction means that a failure half-way
 * (a database error, an invalid `resource`) rolls back the consumption, so the client can retry
 * with the same refresh token instead of being treated as a replay (OAuth 2.1 §4.3.1; RFC 9700
 * §4.14.2 asks for reuse detection, not for burning tokens on server faults).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { ControlledTransaction } from 'kysely';
import type { DB } from './database.ts';
import type { Database } from './schema.ts';

export interface UnitOfWork {
  trx: ControlledTransaction<Database>;
  /** Set when something was revoked (reuse detection): that must be kept even if the request fails. */
  revoked: boolean;
  /** Run after a successful commit (e.g. streaming audit events): never for rolled-back work. */
  afterCommit: Array<() => void>;
}

const storage = new AsyncLocalStorage<UnitOfWork>();

/** The executor to use now: the request's transaction when there is one, else the database. */
export function current(db: DB): DB {
  return (storage.getStore()?.trx as DB | undefined) ?? db;
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
  const uow: UnitOfWork = { trx, revoked: false, afterCommit: [] };
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

async function commit(uow: UnitOfWork): Promise<void> {
  await uow.trx.commit().execute();
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
