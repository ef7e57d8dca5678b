/**
 * Verifies the audit trail's hash chain (migration 0005): each row's `prev_hash` is the hash of the
 * row before it (by id), and its `hash` is SHA-256 over that and the row's content. An edited row
 * breaks its own hash; a deleted one breaks the next row's `prev_hash`. (Cutting off the newest
 * rows leaves a valid shorter chain: the JSON-lines sink, kept elsewhere, is the witness for that.)
 */
import { sql } from 'kysely';
import type { DB } from '../db/database.ts';

export interface ChainProblem {
  id: string;
  problem: string;
}

export interface ChainReport {
  events: number;
  lastHash: string | null;
  problems: ChainProblem[];
}

const BATCH = 5000;

export async function verifyAuditChain(db: DB, options: { maxProblems?: number } = {}): Promise<ChainReport> {
  const maxProblems = options.maxProblems ?? 20;
  const problems: ChainProblem[] = [];
  let previous: string | null = null;
  let afterId = '0';
  let events = 0;
  for (;;) {
    const { rows } = await sql<{ id: string; prev_hash: string | null; hash: string | null; computed: string | null }>`
      SELECT a.id::text AS id, a.prev_hash, a.hash,
             encode(sha256(convert_to(a.prev_hash || E'\\x1e' || audit_event_content(a), 'UTF8')), 'hex') AS computed
      FROM audit_events a
      WHERE a.id > ${afterId}::bigint
      ORDER BY a.id
      LIMIT ${BATCH}
    `.execute(db);
    for (const row of rows) {
      events++;
      const expectedPrev = previous ?? 'genesis';
      if (row.hash === null || row.prev_hash === null) problems.push({ id: row.id, problem: 'the row has no hash: it was not written through the chain' });
      else {
        if (row.prev_hash !== expectedPrev) problems.push({ id: row.id, problem: 'its prev_hash does not match the row before it: a row was removed or reordered' });
        if (row.computed !== row.hash) problems.push({ id: row.id, problem: 'its content does not match its hash: the row was edited' });
      }
      previous = row.hash;
      afterId = row.id;
      if (problems.length >= maxProblems) return { events, lastHash: previous, problems };
    }
    if (rows.length < BATCH) break;
  }
  return { events, lastHash: previous, problems };
}
