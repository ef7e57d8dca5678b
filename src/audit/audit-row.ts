/**
 * An `audit_events` row as the sealer and the verifier read it, and what they compute from it:
 * the fields its MAC covers, and its leaf hash (RFC 6962) over the whole row.
 */
import { canonicalJson, type MacFields } from './audit-mac.ts';
import { leafHash } from './merkle.ts';

export interface AuditRow {
  id: bigint;
  /** The writing transaction (xid8), stamped by the insert trigger; null for rows written before migration 0009. */
  txid: bigint | null;
  /** `occurred_at` in UTC with microseconds (`2026-01-02T03:04:05.123456Z`), exactly as stored. */
  occurredAt: string;
  event: string;
  actor: string | null;
  clientId: string | null;
  accountId: string | null;
  resource: string | null;
  sourceIp: string | null;
  userAgent: string | null;
  requestId: string | null;
  details: unknown;
  /** The pre-0009 hash chain (migration 0005); null on rows written since. */
  prevHash: string | null;
  hash: string | null;
  mac: string | null;
}

/** A row written before migration 0009 (no txid): it has no MAC, and the old hash chain covers it. */
export const isLegacy = (row: Pick<AuditRow, 'txid'>) => row.txid === null;

export function macFieldsOf(row: AuditRow): MacFields {
  return {
    event: row.event,
    actor: row.actor,
    client_id: row.clientId,
    account_id: row.accountId,
    resource: row.resource,
    source_ip: row.sourceIp,
    user_agent: row.userAgent,
    request_id: row.requestId,
    details: row.details,
  };
}

const LEAF_VERSION = 'gatehouse.audit.leaf.v1';

/**
 * The row's leaf hash: over every column, in canonical JSON (audit-mac.ts), so that a change to any
 * of them — the ones the MAC covers and the ones the database stamps — changes it.
 */
export function rowLeaf(row: AuditRow): Buffer {
  return leafHash(
    canonicalJson([
      LEAF_VERSION,
      String(row.id),
      row.txid === null ? null : String(row.txid),
      row.occurredAt,
      row.event,
      row.actor,
      row.clientId,
      row.accountId,
      row.resource,
      row.sourceIp,
      row.userAgent,
      row.requestId,
      row.details ?? {},
      row.prevHash,
      row.hash,
      row.mac,
    ]),
  );
}

/** Sealing order: pre-0009 rows first by id, then (txid, id). Negative when `a` comes first. */
export function compareSealOrder(a: { txid: bigint | null; id: bigint }, b: { txid: bigint | null; id: bigint }): number {
  if (a.txid === null || b.txid === null) {
    if (a.txid !== null) return 1;
    if (b.txid !== null) return -1;
  } else if (a.txid !== b.txid) return a.txid < b.txid ? -1 : 1;
  return a.id === b.id ? 0 : a.id < b.id ? -1 : 1;
}
