/**
 * The audit trail's verification, in the shape it had while every row was hash-chained (migration
 * 0005): a list of problems by event id. Kept for callers of that shape; new code calls
 * {@link verifyAuditTrail} (verify.ts), which this runs: row MACs, sealed rows against their signed
 * checkpoints, the checkpoints' own chain, and the old hash chain for rows written before 0009.
 */
import type { DB } from '../db/database.ts';
import { createAuditKeys, type AuditKeys } from './audit-keys.ts';
import { unsealedThreshold, verifyAuditTrail } from './verify.ts';

export interface ChainProblem {
  /** An event id, or `checkpoint <seq>`. */
  id: string;
  problem: string;
}

export interface ChainReport {
  events: number;
  /** The newest checkpoint's digest (null before the first seal). */
  lastHash: string | null;
  problems: ChainProblem[];
}

/**
 * @param options.keys the deployment's audit keys; by default the development key's (as
 * createSecretBox does without a key-encryption key), which is right only where that key wrote.
 * @deprecated use {@link verifyAuditTrail}, which says more.
 */
export async function verifyAuditChain(db: DB, options: { maxProblems?: number; keys?: AuditKeys; unsealedAfter?: number } = {}): Promise<ChainReport> {
  const report = await verifyAuditTrail(db, options.keys ?? createAuditKeys(undefined), {
    unsealedAfter: options.unsealedAfter ?? unsealedThreshold(10),
    maxProblems: options.maxProblems ?? 20,
  });
  return {
    events: report.events,
    lastHash: report.head?.digest ?? null,
    problems: report.problems.map((p) => ({ id: p.subject === 'event' ? p.id : `checkpoint ${p.id}`, problem: p.problem })),
  };
}
