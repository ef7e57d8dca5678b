/**
 * Housekeeping (issue 7 §5): deletes expired tokens, codes, sessions, interactions and grants,
 * stale cached metadata documents and rate-limit state, and clients that waited for approval longer
 * than GATEHOUSE_PENDING_CLIENT_TTL. Runs from `gatehouse janitor` and on a schedule inside every
 * server; with many instances on one database, one runs it at a time (an advisory lock) and the
 * others skip that round.
 */
import type { ClientsService } from '../clients/clients.service.ts';
import type { DB } from '../db/database.ts';
import { ADVISORY_LOCKS, withAdvisoryLock } from '../db/advisory-lock.ts';
import { sweepExpired, type SweepReport } from '../oidc/adapter.ts';

export interface JanitorReport extends SweepReport {
  /** Clients deleted because nobody decided on them within the pending-client TTL. */
  expiredClients: string[];
  durationMs: number;
}

export type JanitorOutcome = { ran: true; report: JanitorReport } | { ran: false; reason: 'another instance is running it' };

export interface JanitorDeps {
  db: DB;
  /** PostgreSQL URL for the advisory lock; undefined for the embedded database (one process). */
  databaseUrl: string | undefined;
  clients: Pick<ClientsService, 'expireStalePending'>;
  /** Seconds a never-decided client is kept; 0 keeps them. */
  pendingClientTtl: number;
  /** Seconds an expired row is kept before deletion (clock skew between instances). */
  graceSeconds?: number;
}

export async function runJanitor(deps: JanitorDeps): Promise<JanitorOutcome> {
  const started = performance.now();
  const outcome = await withAdvisoryLock(deps.databaseUrl, ADVISORY_LOCKS.janitor, async () => {
    const swept = await sweepExpired(deps.db, deps.graceSeconds);
    // Each expiry is audited (client.expired) by the clients service.
    const expiredClients = deps.pendingClientTtl > 0 ? await deps.clients.expireStalePending(deps.pendingClientTtl) : [];
    return { ...swept, expiredClients, durationMs: Math.round(performance.now() - started) };
  });
  return outcome.acquired ? { ran: true, report: outcome.value } : { ran: false, reason: 'another instance is running it' };
}

/** One line for people: what was deleted, by kind. */
export function describeJanitorReport(report: JanitorReport): string {
  const parts = [
    ...Object.entries(report.payloads)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([model, n]) => `${n} ${model}`),
    ...(report.metadataDocuments ? [`${report.metadataDocuments} cached metadata document(s)`] : []),
    ...(report.rateLimitCounters ? [`${report.rateLimitCounters} rate-limit counter(s)`] : []),
    ...(report.signInAttempts ? [`${report.signInAttempts} sign-in failure record(s)`] : []),
    ...(report.adminSessions ? [`${report.adminSessions} admin session(s)`] : []),
    ...(report.expiredClients.length ? [`${report.expiredClients.length} never-approved client(s)`] : []),
  ];
  return parts.length ? `Deleted ${parts.join(', ')} in ${report.durationMs} ms.` : `Nothing to delete (${report.durationMs} ms).`;
}
