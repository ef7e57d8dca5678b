/**
 * The sealer (issue 14 §4): turns committed audit rows into signed, chained checkpoints, so that the
 * trail can be verified without trusting the database or its credentials (checkpoint.ts).
 *
 * Writers only append (audit-log.ts); nobody waits for anybody. Sequencing happens here, after the
 * fact, the way Trillian and Tessera split sequencing from integration (google/trillian `log`,
 * transparency-dev/tessera) and SQL Server's ledger seals transactions into blocks:
 *
 * 1. One sealer at a time across every instance: a session advisory lock (`pg_try_advisory_lock`,
 *    db/advisory-lock.ts). An instance that finds it taken skips the round. The embedded database
 *    has one process; a promise chain keeps that process's rounds from overlapping.
 * 2. In one REPEATABLE READ transaction: the horizon is `pg_snapshot_xmin(pg_current_snapshot())`.
 *    A sequence value becomes visible at commit, not in id order, so "everything after the last id"
 *    would skip rows that commit late. Every transaction with an id below the horizon has ended,
 *    and any later one gets a larger id: a row with a txid below it is either visible now or never
 *    will be. So rows are read after the last checkpoint's position, in (txid, id) order, below the
 *    horizon (rows written before migration 0009, which have no txid, first, by id).
 * 3. Each row's MAC is checked; a row without a valid one is a forgery: logged as an error,
 *    counted, and named in the checkpoint's `invalid` list, for good.
 * 4. The checkpoint (at most {@link MAX_CHECKPOINT_ROWS} rows; the round loops for more) holds
 *    each row's leaf hash over the whole row, their RFC 6962 root, the previous checkpoint's
 *    digest, and an Ed25519 signature by a key derived from the key-encryption key, which is not
 *    in the database. It is INSERTed, and once committed written to the audit sink as a
 *    `gatehouse.audit.checkpoint` line: a copy outside the database (CloudTrail's digest files).
 *
 * A long-running transaction holds the horizon back: rows written after it began stay unsealed
 * until it ends (`gatehouse audit verify` reports rows unsealed for longer than the sealing delay).
 *
 * Epochs. The horizon never decreases within one PostgreSQL cluster. A logical dump restored into
 * another cluster keeps the rows' txids but not the counter: new rows would get txids below rows
 * already sealed and never be read. When the horizon is below the last checkpoint's, the sealer
 * starts a new epoch: it seals, in a backfill (CloudTrail's `_backfill` digests), every row no
 * checkpoint holds up to the highest id present now, and from then on reads only rows above that
 * id. A row of a transaction still open at that moment is missed (verify reports it); the restore
 * procedure in docs/deployment.md seals before any instance writes.
 */
import type { Logger } from 'pino';
import { sql } from 'kysely';
import type { DB } from '../db/database.ts';
import { ADVISORY_LOCKS, withAdvisoryLock } from '../db/advisory-lock.ts';
import type { AuditKeys } from './audit-keys.ts';
import { checkMac, describeMacFailure } from './audit-mac.ts';
import { isLegacy, macFieldsOf, rowLeaf, type AuditRow } from './audit-row.ts';
import { createAuditRepository, type StoredCheckpoint } from './audit.repository.ts';
import type { AuditSink } from './audit-sink.ts';
import { GENESIS, MAX_CHECKPOINT_ROWS, checkSignature, checkpointLine, encodeIds, idRuns, signBody, type Checkpoint, type CheckpointBody } from './checkpoint.ts';
import { merkleRoot } from './merkle.ts';

/** What the sealer reports to Prometheus (metrics.ts). */
export interface AuditMetrics {
  /** A checkpoint was committed, sealing `rows` rows. */
  sealed(rows: number): void;
  /** Rows sealed without a valid MAC (forged). */
  invalidRows(count: number): void;
  /** A round failed or was refused (the last checkpoint does not verify, the database was away). */
  failed(): void;
}

/** The last checkpoint does not verify under a configured key: sealing on top of it would vouch for it. */
export class SealRefusedError extends Error {
  override readonly name = 'SealRefusedError';
  readonly code = 'ERR_AUDIT_SEAL_REFUSED';
}

export type SealOutcome =
  | { ran: true; checkpoints: Checkpoint[]; rows: number; invalid: bigint[] }
  | { ran: false; reason: 'another instance is sealing' };

export interface SealerDeps {
  db: DB;
  /** PostgreSQL URL for the advisory lock; undefined for the embedded database (one process). */
  databaseUrl: string | undefined;
  keys: AuditKeys;
  sink?: AuditSink | undefined;
  logger?: Logger | undefined;
  metrics?: AuditMetrics | undefined;
  /** Rows per checkpoint, at most {@link MAX_CHECKPOINT_ROWS} (smaller in tests). */
  batchSize?: number;
}

/** One round seals at most this many checkpoints; the next round carries on. */
const MAX_CHECKPOINTS_PER_ROUND = 100;

interface Position {
  epoch: number;
  floorId: bigint;
  lastTxid: bigint | null;
  lastId: bigint;
}

export function createAuditSealer(deps: SealerDeps) {
  const repo = createAuditRepository(deps.db);
  const { keys, logger } = deps;
  const batchSize = Math.min(Math.max(1, deps.batchSize ?? MAX_CHECKPOINT_ROWS), MAX_CHECKPOINT_ROWS);

  /** A signed checkpoint sealing `rows`; the position moves to the last of them, unless `backfill` keeps it at `at`'s. */
  function build(prev: Pick<Checkpoint, 'seq' | 'digest'> | undefined, at: Position & { horizon: bigint }, rows: AuditRow[], backfill = false): Checkpoint {
    const invalid: bigint[] = [];
    for (const row of rows) {
      // Rows from before 0009 have no MAC; the old hash chain and this checkpoint cover them.
      if (isLegacy(row) && row.mac === null) continue;
      const check = checkMac(keys, row.mac, macFieldsOf(row));
      if (check.ok) continue;
      invalid.push(row.id);
      const level = check.reason === 'unknown-key' ? 'warn' : 'error';
      logger?.[level]({ event: 'audit.forged_row', id: String(row.id), reason: check.reason }, `audit event ${row.id}: ${describeMacFailure(check)}`);
    }
    const leaves = rows.map(rowLeaf);
    const last = backfill ? undefined : rows.at(-1);
    const body: CheckpointBody = {
      seq: (prev?.seq ?? 0n) + 1n,
      epoch: at.epoch,
      floorId: at.floorId,
      horizon: at.horizon,
      lastTxid: last ? last.txid : at.lastTxid,
      lastId: last ? last.id : at.lastId,
      ids: rows.map((r) => r.id),
      invalid,
      root: merkleRoot(leaves).toString('hex'),
      prevDigest: prev?.digest ?? GENESIS,
      sealedAt: new Date(),
      keyId: keys.signer.keyId,
    };
    return { ...body, leaves, ...signBody(keys, body) };
  }

  async function insert(trx: DB, cp: Checkpoint): Promise<void> {
    await repo.insertCheckpoint(trx, cp, encodeIds(cp.ids));
  }

  /** A new epoch (see the module comment): every row no checkpoint holds, up to the highest id now, sealed in id order. */
  async function backfill(trx: DB, last: StoredCheckpoint, horizon: bigint): Promise<Checkpoint[]> {
    const floorId = await repo.maxId(trx);
    const runs = (await repo.allIdLists(trx)).flatMap((ids) => idRuns(ids)).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    const uncovered: bigint[] = [];
    let run = 0;
    for (let after = 0n; ; ) {
      const ids = await repo.idsUpTo(trx, after, floorId, 10_000);
      for (const id of ids) {
        while (run < runs.length && runs[run]![1] < id) run++;
        if (!(run < runs.length && runs[run]![0] <= id)) uncovered.push(id);
      }
      if (ids.length < 10_000) break;
      after = ids.at(-1)!;
    }
    const at = { epoch: last.epoch + 1, floorId, lastTxid: null, lastId: floorId, horizon };
    logger?.error(
      { event: 'audit.new_epoch', epoch: at.epoch, horizon: String(horizon), previousHorizon: String(last.horizon), floorId: String(floorId), backfill: uncovered.length },
      `audit sealing: the transaction-id counter went backwards (horizon ${horizon}, checkpoint ${last.seq} had ${last.horizon}): ` +
        `the database was restored into another PostgreSQL cluster. Epoch ${at.epoch} starts above event ${floorId}; ${uncovered.length} event(s) no checkpoint held are sealed now.`,
    );
    const out: Checkpoint[] = [];
    let prev: Pick<Checkpoint, 'seq' | 'digest'> = last;
    for (let i = 0; i === 0 || i < uncovered.length; i += batchSize) {
      const rows = await repo.rowsByIds(uncovered.slice(i, i + batchSize), trx);
      const cp = build(prev, at, rows, true);
      await insert(trx, cp);
      out.push(cp);
      prev = cp;
    }
    return out;
  }

  /** One REPEATABLE READ transaction: at most one checkpoint (or a new epoch's backfill). */
  async function sealBatch(): Promise<{ checkpoints: Checkpoint[]; more: boolean }> {
    return deps.db.transaction().execute(async (trx) => {
      // Before any other statement: the snapshot, and so the horizon, is fixed from here on.
      await sql`SET TRANSACTION ISOLATION LEVEL REPEATABLE READ`.execute(trx);
      const horizon = await repo.horizon(trx);
      const last = await repo.lastCheckpoint(trx);
      if (last) {
        const check = checkSignature(keys, last);
        if (check !== 'valid') {
          throw new SealRefusedError(
            check === 'unknown-key'
              ? `checkpoint ${last.seq} is signed by key ${last.keyId}, which this instance's GATEHOUSE_KEY_ENCRYPTION_KEY (and GATEHOUSE_PREVIOUS_KEY_ENCRYPTION_KEYS) do not derive: another instance seals (is the key being replaced?), or the checkpoint is forged`
              : `checkpoint ${last.seq} does not verify (${check}): the checkpoint table was tampered with; run \`gatehouse audit verify\``,
          );
        }
        if (horizon < last.horizon) return { checkpoints: await backfill(trx, last, horizon), more: true };
      }
      const at: Position = last ? { epoch: last.epoch, floorId: last.floorId, lastTxid: last.lastTxid, lastId: last.lastId } : { epoch: 1, floorId: 0n, lastTxid: null, lastId: 0n };
      const rows = await repo.rowsToSeal(trx, { ...at, horizon, limit: batchSize });
      // After a key-encryption key replacement, an empty checkpoint under the new key, so that the
      // chain's head is signed by a key that stays configured.
      if (!rows.length && (!last || last.keyId === keys.signer.keyId)) return { checkpoints: [], more: false };
      const cp = build(last, { ...at, horizon }, rows);
      await insert(trx, cp);
      return { checkpoints: [cp], more: rows.length === batchSize };
    });
  }

  async function sealNow(): Promise<SealOutcome> {
    const outcome = await withAdvisoryLock(deps.databaseUrl, ADVISORY_LOCKS.auditSealer, async () => {
      const written: Checkpoint[] = [];
      for (let round = 0; round < MAX_CHECKPOINTS_PER_ROUND; round++) {
        const { checkpoints, more } = await sealBatch();
        for (const cp of checkpoints) {
          // Committed: now it may leave the database.
          deps.sink?.write(checkpointLine(cp, keys.signer.publicKeyRaw));
          deps.metrics?.sealed(cp.ids.length);
          if (cp.invalid.length) deps.metrics?.invalidRows(cp.invalid.length);
        }
        written.push(...checkpoints);
        if (!more) break;
      }
      return written;
    });
    if (!outcome.acquired) return { ran: false, reason: 'another instance is sealing' };
    const checkpoints = outcome.value;
    return { ran: true, checkpoints, rows: checkpoints.reduce((n, cp) => n + cp.ids.length, 0), invalid: checkpoints.flatMap((cp) => cp.invalid) };
  }

  let tail: Promise<unknown> = Promise.resolve();
  return {
    /**
     * Seals what is sealable now: rows committed below the horizon, in checkpoints of at most
     * {@link MAX_CHECKPOINT_ROWS}. Rejects with {@link SealRefusedError} when the last checkpoint does
     * not verify, and with the database's error when it is away; either way nothing was written.
     */
    seal(): Promise<SealOutcome> {
      const run = tail.then(sealNow, sealNow);
      tail = run.catch(() => {});
      return run.catch((err: unknown) => {
        deps.metrics?.failed();
        throw err;
      });
    },
  };
}

export type AuditSealer = ReturnType<typeof createAuditSealer>;

/** One line for people: what a round sealed. */
export function describeSealOutcome(outcome: SealOutcome): string {
  if (!outcome.ran) return 'Another Gatehouse instance is sealing the audit trail right now; nothing done.';
  if (!outcome.checkpoints.length) return 'Nothing to seal: every committed audit event is in a checkpoint.';
  const first = outcome.checkpoints[0]!;
  const last = outcome.checkpoints.at(-1)!;
  const seqs = first === last ? `checkpoint ${first.seq}` : `checkpoints ${first.seq}–${last.seq}`;
  const forged = outcome.invalid.length ? ` ${outcome.invalid.length} of them have no valid MAC (forged): ${outcome.invalid.join(', ')}.` : '';
  return `Sealed ${outcome.rows} audit event(s) in ${seqs} (head ${last.digest}).${forged}`;
}
