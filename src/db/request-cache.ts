/**
 * Rows read ahead for one HTTP request (the token endpoint reads them all in one round trip, see
 * oidc/token-prefetch.ts), served to the repositories that would otherwise each ask the database.
 *
 * The rules that keep it correct:
 * - it lives in the request's context only, and dies with the request: no cross-request caching;
 * - a repository consults it only for reads, and every write to a row forgets that row first, so a
 *   read after a write in the same request goes to the database;
 * - `null` means "read ahead and absent", which is an answer too; no entry means "not read ahead".
 * Writes stay guarded by the database (a conditional UPDATE for consumption), so a row read ahead a
 * few milliseconds before the request's transaction can never let two redemptions both succeed.
 */
import { requestContext } from '../http/request-context.ts';

const PREFIX = 'read-ahead:';

/** Stores rows read ahead under their keys (e.g. `client:abc`, `payload:RefreshToken:<digest>`). */
export function primeReadAhead(entries: Iterable<[string, unknown]>): void {
  const memo = requestContext()?.memo;
  if (!memo) return;
  for (const [key, value] of entries) memo.set(PREFIX + key, value ?? null);
}

/** The row read ahead for `key`: `{ value }` (value null when known absent), or undefined when not read ahead. */
export function readAhead<T>(key: string): { value: T | null } | undefined {
  const memo = requestContext()?.memo;
  if (!memo?.has(PREFIX + key)) return undefined;
  return { value: memo.get(PREFIX + key) as T | null };
}

/** Forgets rows read ahead: one key, or every key starting with `prefix` when it ends with `*`. */
export function forgetReadAhead(key: string): void {
  const memo = requestContext()?.memo;
  if (!memo) return;
  if (key.endsWith('*')) {
    const start = PREFIX + key.slice(0, -1);
    for (const k of [...memo.keys()]) if (k.startsWith(start)) memo.delete(k);
  } else memo.delete(PREFIX + key);
}

/** The keys rows are read ahead under, shared by the read-ahead and the repositories that consult it. */
export const readAheadKeys = {
  client: (clientId: string) => `client:${clientId}`,
  /** `storedId`: the id as stored (the digest, for hashed models). */
  payload: (model: string, storedId: string) => `payload:${model}:${storedId}`,
  account: (accountId: string) => `account:${accountId}`,
  resources: 'resources',
};

/** JSON read ahead carries timestamps as strings; the repositories hand out Dates. */
export function asDate(value: unknown): Date | null {
  if (value === null || value === undefined) return null;
  return value instanceof Date ? value : new Date(String(value));
}
