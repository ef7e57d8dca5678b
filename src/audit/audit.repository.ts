/**
 * Every statement the sealer and the verifier send (audit_events, audit_checkpoints). Reads only,
 * and INSERTs into the append-only checkpoint table: nothing here updates or deletes a row, which
 * the runtime role could not do anyway (migration 0009).
 *
 * Ids and transaction ids are bigints in JavaScript and travel as text, so nothing rounds them
 * (the embedded database returns int8 as a number).
 */
import { sql, type RawBuilder } from 'kysely';
import type { DB } from '../db/database.ts';
import type { MacFields } from './audit-mac.ts';
import type { AuditRow } from './audit-row.ts';
import type { Checkpoint } from './checkpoint.ts';
import { decodeIds } from './checkpoint.ts';

/** A row as read for sealing and verifying: the MAC's fields, and what the database stamped. */
interface RawRow extends MacFields {
  id: string;
  txid: string | null;
  occurred_at: string;
  prev_hash: string | null;
  hash: string | null;
  mac: string | null;
}

const ROW_COLUMNS = sql`a.id::text AS id, a.txid::text AS txid,
  to_char(a.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS occurred_at,
  a.event, a.actor, a.client_id, a.account_id, a.resource, a.source_ip, a.user_agent, a.request_id, a.details,
  a.prev_hash, a.hash, a.mac`;

function toRow(r: RawRow): AuditRow {
  return {
    id: BigInt(r.id),
    txid: r.txid === null ? null : BigInt(r.txid),
    occurredAt: r.occurred_at,
    event: r.event,
    actor: r.actor,
    clientId: r.client_id,
    accountId: r.account_id,
    resource: r.resource,
    sourceIp: r.source_ip,
    userAgent: r.user_agent,
    requestId: r.request_id,
    details: typeof r.details === 'string' ? (JSON.parse(r.details) as unknown) : r.details,
    prevHash: r.prev_hash,
    hash: r.hash,
    mac: r.mac,
  };
}

interface RawCheckpoint {
  seq: string;
  epoch: number;
  floor_id: string;
  horizon: string;
  last_txid: string | null;
  last_id: string;
  row_count: number;
  ids: string;
  leaves?: Uint8Array;
  root: string;
  invalid_ids: string;
  prev_digest: string;
  digest: string;
  key_id: string;
  signature: string;
  sealed_at: Date;
}

/** A stored checkpoint, and what could not be read from it (a malformed id list is a finding, not a crash). */
export interface StoredCheckpoint extends Checkpoint {
  /** `row_count` as stored (the signed body's count is `ids.length`). */
  rowCount: number;
  /** Set when the stored id list or leaves could not be read: then `ids` and `leaves` are empty. */
  unreadable?: string;
}

function toCheckpoint(r: RawCheckpoint): StoredCheckpoint {
  let ids: bigint[] = [];
  let unreadable: string | undefined;
  try {
    // A stored list is not trusted to be small: no checkpoint seals more than MAX_CHECKPOINT_ROWS.
    ids = decodeIds(r.ids);
  } catch (err) {
    unreadable = (err as Error).message;
  }
  const bytes = r.leaves ? Buffer.from(r.leaves) : Buffer.alloc(0);
  const leaves: Buffer[] = [];
  if (bytes.length % 32 !== 0) unreadable ??= 'its leaves are not a whole number of 32-byte hashes';
  else for (let i = 0; i < bytes.length; i += 32) leaves.push(bytes.subarray(i, i + 32));
  const invalid = r.invalid_ids === '-' || r.invalid_ids === '' ? [] : r.invalid_ids.split(',').filter((x) => /^\d+$/.test(x)).map(BigInt);
  return {
    seq: BigInt(r.seq),
    epoch: Number(r.epoch),
    floorId: BigInt(r.floor_id),
    horizon: BigInt(r.horizon),
    lastTxid: r.last_txid === null ? null : BigInt(r.last_txid),
    lastId: BigInt(r.last_id),
    ids: unreadable ? [] : ids,
    invalid,
    root: r.root,
    prevDigest: r.prev_digest,
    sealedAt: r.sealed_at instanceof Date ? r.sealed_at : new Date(r.sealed_at),
    keyId: r.key_id,
    leaves: unreadable ? [] : leaves,
    digest: r.digest,
    signature: r.signature,
    rowCount: Number(r.row_count),
    ...(unreadable ? { unreadable } : {}),
  };
}

const CHECKPOINT_COLUMNS = (withLeaves: boolean) => sql`seq::text AS seq, epoch, floor_id::text AS floor_id, horizon::text AS horizon,
  last_txid::text AS last_txid, last_id::text AS last_id, row_count, ids, ${withLeaves ? sql`leaves,` : sql``}
  root, invalid_ids, prev_digest, digest, key_id, signature, sealed_at`;

async function rows(db: DB, query: RawBuilder<RawRow>): Promise<AuditRow[]> {
  return (await query.execute(db)).rows.map(toRow);
}

export function createAuditRepository(db: DB) {
  return {
    /**
     * The first statement of a sealing transaction (REPEATABLE READ: it fixes the snapshot):
     * `pg_snapshot_xmin` of that snapshot. Every transaction below it has ended, and every later one
     * gets a larger id, so no row with a txid below it can appear after this (PostgreSQL "Transaction
     * ID and snapshot information functions"; the xid-horizon pattern of event-driven-io/emmett).
     */
    async horizon(trx: DB): Promise<bigint> {
      const { rows } = await sql<{ horizon: string }>`SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS horizon`.execute(trx);
      return BigInt(rows[0]!.horizon);
    },

    async lastCheckpoint(trx: DB = db): Promise<StoredCheckpoint | undefined> {
      const { rows } = await sql<RawCheckpoint>`SELECT ${CHECKPOINT_COLUMNS(false)} FROM audit_checkpoints c ORDER BY c.seq DESC LIMIT 1`.execute(trx);
      return rows[0] ? toCheckpoint(rows[0]) : undefined;
    },

    /** Checkpoints in seq order, from `afterSeq` on, at most `limit`; with their leaves when asked. */
    async checkpoints(options: { afterSeq?: bigint; limit?: number; withLeaves?: boolean } = {}): Promise<StoredCheckpoint[]> {
      const { rows } = await sql<RawCheckpoint>`
        SELECT ${CHECKPOINT_COLUMNS(options.withLeaves ?? false)} FROM audit_checkpoints c
        WHERE c.seq > ${String(options.afterSeq ?? -1n)}::bigint ORDER BY c.seq LIMIT ${options.limit ?? 1000}`.execute(db);
      return rows.map(toCheckpoint);
    },

    /**
     * The next rows to seal after the position (`lastTxid`, `lastId`), in sealing order: first
     * pre-0009 rows (no txid) by id, then rows with a txid below `horizon` by (txid, id), all with
     * an id above `floorId` (index audit_events_seal_order serves the second part).
     */
    async rowsToSeal(trx: DB, at: { floorId: bigint; lastTxid: bigint | null; lastId: bigint; horizon: bigint; limit: number }): Promise<AuditRow[]> {
      const out: AuditRow[] = [];
      if (at.lastTxid === null) {
        out.push(
          ...(await rows(
            trx,
            sql<RawRow>`SELECT ${ROW_COLUMNS} FROM audit_events a
              WHERE a.txid IS NULL AND a.id > ${String(at.lastId)}::bigint AND a.id > ${String(at.floorId)}::bigint
              ORDER BY a.id LIMIT ${at.limit}`,
          )),
        );
        if (out.length >= at.limit) return out;
        out.push(
          ...(await rows(
            trx,
            sql<RawRow>`SELECT ${ROW_COLUMNS} FROM audit_events a
              WHERE a.txid IS NOT NULL AND a.txid < ${String(at.horizon)}::xid8 AND a.id > ${String(at.floorId)}::bigint
              ORDER BY a.txid, a.id LIMIT ${at.limit - out.length}`,
          )),
        );
        return out;
      }
      return rows(
        trx,
        sql<RawRow>`SELECT ${ROW_COLUMNS} FROM audit_events a
          WHERE a.txid IS NOT NULL AND a.txid < ${String(at.horizon)}::xid8
            AND (a.txid, a.id) > (${String(at.lastTxid)}::xid8, ${String(at.lastId)}::bigint)
            AND a.id > ${String(at.floorId)}::bigint
          ORDER BY a.txid, a.id LIMIT ${at.limit}`,
      );
    },

    /** Full rows by id (at most a few thousand at a time), in id order. */
    async rowsByIds(ids: readonly bigint[], trx: DB = db): Promise<AuditRow[]> {
      if (!ids.length) return [];
      return rows(trx, sql<RawRow>`SELECT ${ROW_COLUMNS} FROM audit_events a WHERE a.id = ANY(${ids.map(String)}::bigint[]) ORDER BY a.id`);
    },

    /** Every row's id, txid and whether it is older than `staleSeconds`, in id order, a page at a time. */
    async scan(afterId: bigint, limit: number, staleSeconds: number): Promise<Array<{ id: bigint; txid: bigint | null; stale: boolean }>> {
      const { rows } = await sql<{ id: string; txid: string | null; stale: boolean }>`
        SELECT a.id::text AS id, a.txid::text AS txid, a.occurred_at < now() - make_interval(secs => ${staleSeconds}) AS stale
        FROM audit_events a WHERE a.id > ${String(afterId)}::bigint ORDER BY a.id LIMIT ${limit}`.execute(db);
      return rows.map((r) => ({ id: BigInt(r.id), txid: r.txid === null ? null : BigInt(r.txid), stale: Boolean(r.stale) }));
    },

    /** Ids up to `maxId`, after `afterId`, in id order (a new epoch's backfill looks for rows no checkpoint holds). */
    async idsUpTo(trx: DB, afterId: bigint, maxId: bigint, limit: number): Promise<bigint[]> {
      const { rows } = await sql<{ id: string }>`
        SELECT a.id::text AS id FROM audit_events a
        WHERE a.id > ${String(afterId)}::bigint AND a.id <= ${String(maxId)}::bigint ORDER BY a.id LIMIT ${limit}`.execute(trx);
      return rows.map((r) => BigInt(r.id));
    },

    async maxId(trx: DB): Promise<bigint> {
      const { rows } = await sql<{ id: string | null }>`SELECT max(id)::text AS id FROM audit_events`.execute(trx);
      return rows[0]?.id ? BigInt(rows[0].id) : 0n;
    },

    /** Every checkpoint's id list (for the coverage of a new epoch's backfill). */
    async allIdLists(trx: DB): Promise<string[]> {
      const { rows } = await sql<{ ids: string }>`SELECT ids FROM audit_checkpoints ORDER BY seq`.execute(trx);
      return rows.map((r) => r.ids);
    },

    async insertCheckpoint(trx: DB, cp: Checkpoint, idsText: string): Promise<void> {
      await trx
        .insertInto('audit_checkpoints')
        .values({
          seq: String(cp.seq),
          epoch: cp.epoch,
          floor_id: String(cp.floorId),
          horizon: String(cp.horizon),
          last_txid: cp.lastTxid === null ? null : String(cp.lastTxid),
          last_id: String(cp.lastId),
          row_count: cp.ids.length,
          ids: idsText,
          leaves: Buffer.concat(cp.leaves),
          root: cp.root,
          invalid_ids: cp.invalid.length ? cp.invalid.join(',') : '-',
          prev_digest: cp.prevDigest,
          digest: cp.digest,
          key_id: cp.keyId,
          signature: cp.signature,
          sealed_at: cp.sealedAt,
        })
        .execute();
    },

    /**
     * The pre-0009 hash chain (migration 0005), a page at a time: rows without a txid in id order,
     * with the hash the old algorithm gives their content (computed by the database, with the
     * function 0005 defined, so it stays exactly that algorithm).
     */
    async legacyChain(afterId: bigint, limit: number): Promise<Array<{ id: bigint; prevHash: string | null; hash: string | null; computed: string | null }>> {
      const { rows } = await sql<{ id: string; prev_hash: string | null; hash: string | null; computed: string | null }>`
        SELECT a.id::text AS id, a.prev_hash, a.hash,
               encode(sha256(convert_to(a.prev_hash || E'\\x1e' || audit_event_content(a), 'UTF8')), 'hex') AS computed
        FROM audit_events a
        WHERE a.txid IS NULL AND a.id > ${String(afterId)}::bigint
        ORDER BY a.id
        LIMIT ${limit}`.execute(db);
      return rows.map((r) => ({ id: BigInt(r.id), prevHash: r.prev_hash, hash: r.hash, computed: r.computed }));
    },

    /** Rows sharing one MAC (so one nonce): copies of a row. */
    async duplicateMacs(limit: number): Promise<bigint[][]> {
      const { rows } = await sql<{ ids: string[] }>`
        SELECT array_agg(id::text ORDER BY id) AS ids FROM audit_events
        WHERE mac IS NOT NULL GROUP BY mac HAVING count(*) > 1 ORDER BY min(id) LIMIT ${limit}`.execute(db);
      return rows.map((r) => (Array.isArray(r.ids) ? r.ids : parsePgArray(r.ids as unknown as string)).map((id) => BigInt(id)));
    },
  };
}

/** `{1,2,3}` → ['1','2','3'] (a text[] some drivers leave unparsed). */
function parsePgArray(text: string): string[] {
  return text.replace(/^\{|\}$/g, '').split(',').filter(Boolean);
}

export type AuditRepository = ReturnType<typeof createAuditRepository>;
