/**
 * Telling "the database is not there right now" (answer 503, and recover by itself: the pool opens
 * new connections once PostgreSQL answers again) from every other failure (500).
 */
const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);
const SQLSTATES = new Set([
  '57P01', '57P02', '57P03', '53300', '55000', '3D000',
  // The server-side bounds (database.ts): a statement or lock wait cancelled, a transaction left idle.
  '57014', '55P03', '25P03',
  // A deadlock or serialization failure: the transaction was rolled back and may simply be retried.
  // (One lock order everywhere, docs/security.md "Lock order", keeps deadlocks out; should one happen, it is a 503.)
  '40P01', '40001',
  // gatehouse_commit_by (migration 0010): too late to commit, so nothing was.
  'GH002',
]);

/**
 * PostgreSQL did not answer within GATEHOUSE_DATABASE_TIMEOUT: a statement got no reply, or no
 * connection could be had (a hung server or a network that drops packets rather than refusing them).
 * The connection it was sent on is discarded, never handed to another request (database.ts).
 */
export class DatabaseTimeoutError extends Error {
  override readonly name = 'DatabaseTimeoutError';
  /** Stable code for callers to switch on. */
  readonly code = 'database_timeout';
}

export function isDatabaseUnavailable(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof DatabaseTimeoutError) return true;
    const { code, message } = e as { code?: unknown; message?: unknown };
    if (typeof code === 'string' && (CONNECTION_CODES.has(code) || SQLSTATES.has(code) || code.startsWith('08'))) return true;
    // pg and pg-pool report these without a code: a connection cut mid-use, a connect (or the wait
    // for a pooled connection) past connectionTimeoutMillis, a client whose socket already failed.
    if (typeof message === 'string' && /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|not currently accepting connections/i.test(message)) return true;
  }
  return false;
}
