/**
 * Deferred units of work (src/db/unit-of-work.ts): a token request's writes sent as one statement.
 * All or nothing, a gated write that touches no row refuses the batch, writes that bypass the queue
 * are refused loudly, and several audit rows share one statement and still verify (migration 0009: they only append).
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createAuditLog } from '../../src/audit/audit-log.ts';
import { createAuditKeys } from '../../src/audit/audit-keys.ts';
import { verifyAuditTrail } from '../../src/audit/verify.ts';
import { current, inDeferredUnitOfWork, onCommit, write, WriteGateError } from '../../src/db/unit-of-work.ts';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(() => database?.close());

const counter = (key: string) => (db: typeof database.db) => db.insertInto('rate_limit_counters').values({ key, window_start: new Date(), hits: 1 }).returning('key');
const exists = async (key: string) => Boolean(await database.db.selectFrom('rate_limit_counters').select('key').where('key', '=', key).executeTakeFirst());

describe('inDeferredUnitOfWork', () => {
  test('queued writes run once, together, after the work; their rows and commit hooks follow', async () => {
    const seen: string[] = [];
    database.queries.length = 0;
    await inDeferredUnitOfWork(
      database.db,
      async () => {
        expect(await write(database.db, counter('uow:a'), { onRows: (rows) => seen.push(`rows:${rows[0]!.key}`) })).toBeUndefined();
        await write(database.db, counter('uow:b'));
        onCommit(() => seen.push('committed'));
        expect(await exists('uow:a')).toBe(false); // not yet
      },
      () => true,
      () => seen.push('refused'),
    );
    expect(await exists('uow:a')).toBe(true);
    expect(await exists('uow:b')).toBe(true);
    expect(seen).toEqual(['rows:uow:a', 'committed']);
    expect(database.queries.filter((q) => /rate_limit_counters/.test(q) && /^\/\* prepare \*\/ WITH/.test(q))).toHaveLength(1);
  });

  test('a gated write that touches no row refuses the whole batch: nothing is stored, no hook runs', async () => {
    const seen: string[] = [];
    await inDeferredUnitOfWork(
      database.db,
      async () => {
        await write(database.db, counter('uow:c'));
        await write(database.db, (db) => db.updateTable('rate_limit_counters').set({ hits: 99 }).where('key', '=', 'uow:nothing-here').returning('key'), { gate: 'nothing to consume' });
        onCommit(() => seen.push('committed'));
      },
      () => true,
      (error) => seen.push(`refused:${error.message}`),
    );
    expect(seen).toEqual(['refused:nothing to consume']);
    expect(await exists('uow:c')).toBe(false);
  });

  test('an unsuccessful request stores nothing', async () => {
    await inDeferredUnitOfWork(database.db, async () => void (await write(database.db, counter('uow:d'))), () => false, () => {});
    expect(await exists('uow:d')).toBe(false);
  });

  test('a write that bypasses the queue is refused, not silently run outside the batch', async () => {
    await expect(
      inDeferredUnitOfWork(database.db, () => current(database.db).insertInto('rate_limit_counters').values({ key: 'uow:e', window_start: new Date(), hits: 1 }).execute(), () => true, () => {}),
    ).rejects.toThrow(/ran directly inside a deferred unit of work/);
    expect(await exists('uow:e')).toBe(false);
  });

  test('two audit rows in one batch are one statement, and the trail verifies', async () => {
    const audit = createAuditLog({ db: database.db });
    database.queries.length = 0;
    await inDeferredUnitOfWork(
      database.db,
      async () => {
        await audit.record({ event: 'token.issued', actor: 'test' });
        await audit.record({ event: 'token.refreshed', actor: 'test' });
      },
      () => true,
      () => {},
    );
    expect(database.queries.filter((q) => /insert into "audit_events"/i.test(q))).toHaveLength(1);
    const report = await verifyAuditTrail(database.db, createAuditKeys(undefined), { unsealedAfter: 60 });
    expect(report.problems).toEqual([]);
    expect(report.events).toBeGreaterThanOrEqual(2);
  });

  test('WriteGateError is the refusal type', () => {
    expect(new WriteGateError('x')).toBeInstanceOf(Error);
  });
});
