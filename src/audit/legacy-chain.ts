/**
 * The hash chain of rows written before migration 0009 (migration 0005, kept for those rows): each
 * row's `prev_hash` is the hash of the row before it by id ('genesis' when that row has none), and
 * its `hash` is SHA-256 over that and the row's content. An edited row breaks its own hash; a deleted
 * one breaks the next row's `prev_hash`.
 *
 * Rows before the first chained one were written before 0005 and never had a hash: they are counted,
 * not reported. Since 0009 the first checkpoint covers every one of these rows too (sealer.ts), so
 * an edit that recomputes this chain, which anyone with the database's credentials can do, is still
 * caught by the checkpoint's leaf hashes.
 */
import type { AuditRepository } from './audit.repository.ts';

export interface LegacyChainReport {
  /** Rows without a txid (written before migration 0009). */
  rows: number;
  /** Of them, the rows before the chain began (written before migration 0005). */
  beforeChain: number;
  lastHash: string | null;
  problems: Array<{ id: bigint; problem: string }>;
}

const PAGE = 5000;

export async function verifyLegacyChain(repo: AuditRepository): Promise<LegacyChainReport> {
  const report: LegacyChainReport = { rows: 0, beforeChain: 0, lastHash: null, problems: [] };
  let previous: string | null = null;
  let chained = false;
  for (let after = 0n; ; ) {
    const page = await repo.legacyChain(after, PAGE);
    for (const row of page) {
      report.rows++;
      if (row.hash === null || row.prevHash === null) {
        if (chained) report.problems.push({ id: row.id, problem: 'it has no hash, though the rows before it are chained: it was not written through the chain (inserted with the trigger disabled)' });
        else report.beforeChain++;
      } else {
        chained = true;
        if (row.prevHash !== (previous ?? 'genesis')) report.problems.push({ id: row.id, problem: 'its prev_hash does not match the row before it: a row was removed or reordered' });
        if (row.computed !== row.hash) report.problems.push({ id: row.id, problem: 'its content does not match its hash: the row was edited' });
      }
      previous = row.hash;
      report.lastHash = row.hash ?? report.lastHash;
    }
    if (page.length < PAGE) break;
    after = page.at(-1)!.id;
  }
  return report;
}
