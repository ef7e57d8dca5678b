/**
 * The record of every client Gatehouse knows: how and when it arrived, from where, its approval
 * status and its ceiling. (The OAuth metadata itself is written by the oidc-provider adapter.)
 */
import { sql } from 'kysely';
import type { DB } from '../db/database.ts';
import type { ClientCeiling, ClientStatus } from '../db/schema.ts';
import { current } from '../db/unit-of-work.ts';

export interface ClientPolicy {
  status: ClientStatus;
  /** null: no ceiling beyond what each MCP server offers. */
  ceiling: ClientCeiling | null;
}

export interface ClientRecord extends ClientPolicy {
  clientId: string;
  name: string;
  metadata: Record<string, unknown>;
  redirectUris: string[];
  registrationMethod: 'dcr' | 'cimd';
  sourceIp: string | null;
  userAgent: string | null;
  approvedRedirectUris: string[] | null;
  statusReason: string | null;
  statusChangedAt: Date | null;
  statusChangedBy: string | null;
  createdAt: Date;
  lastUsedAt: Date | null;
  /** What it asked for: resource URI → scopes (from authorization attempts), "*" → its registration scope. */
  requested: Record<string, string[]>;
}

/** Who asked, recorded with a client that arrives unannounced. */
export interface Arrival {
  ip: string | undefined;
  userAgent: string | undefined;
}

export interface StatusChange {
  status: ClientStatus;
  reason: string | null;
  by: string;
  ceiling?: ClientCeiling | null;
  approvedRedirectUris?: string[] | null;
}

type Row = {
  client_id: string;
  metadata: Record<string, unknown>;
  status: ClientStatus;
  registration_method: 'dcr' | 'cimd';
  source_ip: string | null;
  user_agent: string | null;
  ceiling: ClientCeiling | null;
  approved_redirect_uris: string[] | null;
  status_reason: string | null;
  status_changed_at: Date | null;
  status_changed_by: string | null;
  created_at: Date;
  last_used_at: Date | null;
  requested: Record<string, string[]>;
};

const COLUMNS = [
  'client_id',
  'metadata',
  'status',
  'registration_method',
  'source_ip',
  'user_agent',
  'ceiling',
  'approved_redirect_uris',
  'status_reason',
  'status_changed_at',
  'status_changed_by',
  'created_at',
  'last_used_at',
  'requested',
] as const;

function toRecord(row: Row): ClientRecord {
  const redirectUris = Array.isArray(row.metadata.redirect_uris) ? row.metadata.redirect_uris.map(String) : [];
  return {
    clientId: row.client_id,
    name: typeof row.metadata.client_name === 'string' && row.metadata.client_name ? row.metadata.client_name : row.client_id,
    metadata: row.metadata,
    redirectUris,
    status: row.status,
    ceiling: row.ceiling,
    registrationMethod: row.registration_method,
    sourceIp: row.source_ip,
    userAgent: row.user_agent,
    approvedRedirectUris: row.approved_redirect_uris,
    statusReason: row.status_reason,
    statusChangedAt: row.status_changed_at,
    statusChangedBy: row.status_changed_by,
    createdAt: row.created_at,
    lastUsedAt: row.last_used_at,
    requested: row.requested ?? {},
  };
}

export const sameUris = (a: readonly string[], b: readonly string[]) => a.length === b.length && [...a].sort().join('\n') === [...b].sort().join('\n');

export function createClientsRepository(db: DB) {
  return {
    async list(filter: { status?: ClientStatus | undefined } = {}): Promise<ClientRecord[]> {
      let query = current(db).selectFrom('clients').select(COLUMNS).orderBy('created_at', 'desc');
      if (filter.status) query = query.where('status', '=', filter.status);
      return (await query.execute()).map((row) => toRecord(row as Row));
    },

    /**
     * For a registration being stored under `id`: the oldest other registered client with this
     * metadata fingerprint (clients/recognition.ts) — unless `id` itself exists, which makes the
     * write an update of that client, never a recognition.
     */
    async findRecognisable(fingerprint: string, id: string) {
      const row = await current(db)
        .selectFrom('clients')
        .select(['client_id', 'created_at', 'status'])
        .where((eb) =>
          eb.or([eb('client_id', '=', id), eb.and([eb('metadata_fingerprint', '=', fingerprint), eb('registration_method', '=', 'dcr')])]),
        )
        .orderBy(sql`client_id = ${id}`, 'desc')
        .orderBy('created_at', 'asc')
        .limit(1)
        .executeTakeFirst();
      return row && row.client_id !== id ? row : undefined;
    },

    async countPending(): Promise<number> {
      const row = await current(db).selectFrom('clients').select((eb) => eb.fn.countAll<string>().as('n')).where('status', '=', 'pending').executeTakeFirstOrThrow();
      return Number(row.n);
    },

    /**
     * Deletes clients that arrived more than `seconds` ago and were never decided on (a client sent
     * back to pending by a changed document has a decision and stays). Returns their ids.
     */
    async deleteStalePending(seconds: number): Promise<string[]> {
      const rows = await current(db)
        .deleteFrom('clients')
        .where('status', '=', 'pending')
        .where('status_changed_at', 'is', null)
        .where('created_at', '<', sql<Date>`now() - make_interval(secs => ${seconds})`)
        .returning('client_id')
        .execute();
      return rows.map((r) => r.client_id);
    },

    async get(clientId: string): Promise<ClientRecord | undefined> {
      const row = await current(db).selectFrom('clients').select(COLUMNS).where('client_id', '=', clientId).executeTakeFirst();
      return row ? toRecord(row as Row) : undefined;
    },

    async policy(clientId: string): Promise<ClientPolicy | undefined> {
      return current(db).selectFrom('clients').select(['status', 'ceiling']).where('client_id', '=', clientId).executeTakeFirst();
    },

    async changeStatus(clientId: string, change: StatusChange): Promise<boolean> {
      const result = await current(db)
        .updateTable('clients')
        .set({
          status: change.status,
          status_reason: change.reason,
          status_changed_by: change.by,
          status_changed_at: sql<Date>`now()`,
          updated_at: sql<Date>`now()`,
          ...(change.ceiling !== undefined ? { ceiling: change.ceiling === null ? null : JSON.stringify(change.ceiling) } : {}),
          ...(change.approvedRedirectUris !== undefined
            ? { approved_redirect_uris: change.approvedRedirectUris === null ? null : JSON.stringify(change.approvedRedirectUris) }
            : {}),
        })
        .where('client_id', '=', clientId)
        .executeTakeFirst();
      return result.numUpdatedRows > 0n;
    },

    /** Adds to what the client asked for (kept to help the administrator decide). */
    async recordRequested(clientId: string, key: string, scopes: string[]): Promise<void> {
      const row = await current(db).selectFrom('clients').select('requested').where('client_id', '=', clientId).executeTakeFirst();
      if (!row) return;
      const before = row.requested[key] ?? [];
      const merged = [...new Set([...before, ...scopes])].slice(0, 100);
      if (merged.length === before.length && key in row.requested) return;
      await current(db)
        .updateTable('clients')
        .set({ requested: JSON.stringify({ ...row.requested, [key]: merged }) })
        .where('client_id', '=', clientId)
        .execute();
    },

    /** How many live grants (user authorizations) the client holds, and when it last got a token. */
    async usage(clientId: string): Promise<{ activeGrants: number; lastTokenAt: Date | null }> {
      const grants = await current(db)
        .selectFrom('oidc_payloads')
        .select((eb) => eb.fn.countAll<string>().as('n'))
        .where('model', '=', 'Grant')
        .where('client_id', '=', clientId)
        .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', sql<Date>`now()`)]))
        .executeTakeFirstOrThrow();
      const last = await current(db)
        .selectFrom('audit_events')
        .select('occurred_at')
        .where('client_id', '=', clientId)
        .where('event', 'in', ['token.issued', 'token.refreshed'])
        .orderBy('id', 'desc')
        .limit(1)
        .executeTakeFirst();
      return { activeGrants: Number(grants.n), lastTokenAt: last?.occurred_at ?? null };
    },

    /** Deletes every grant, refresh token and code of a client (its JWT access tokens expire on their own). */
    async revokeTokens(clientId: string): Promise<number> {
      // Every grant's row first, in id order, then the tokens (docs/security.md "Lock order").
      await current(db)
        .selectFrom('oidc_payloads')
        .select('id')
        .where('model', '=', 'Grant')
        .where('client_id', '=', clientId)
        .orderBy('id')
        .forUpdate()
        .execute();
      const result = await current(db)
        .deleteFrom('oidc_payloads')
        .where('client_id', '=', clientId)
        .where('model', 'in', ['Grant', 'RefreshToken', 'AuthorizationCode', 'AccessToken'])
        .executeTakeFirst();
      return Number(result.numDeletedRows);
    },

    /**
     * Records a client identified by its metadata document, freshly fetched. A new client gets
     * `initial`; a known one gets the new metadata, and if it was approved for other redirect URIs
     * it goes back to pending (issue 3 §4: the admin sees the difference and decides again).
     */
    async recordDocumentClient(
      clientId: string,
      metadata: Record<string, unknown>,
      initial: ClientPolicy & { reason: string | null },
      arrival: Arrival,
    ): Promise<ClientPolicy & { created: boolean; returnedToPending: boolean }> {
      const existing = await current(db)
        .selectFrom('clients')
        .select(['status', 'ceiling', 'approved_redirect_uris', 'metadata'])
        .where('client_id', '=', clientId)
        .executeTakeFirst();
      const redirectUris = Array.isArray(metadata.redirect_uris) ? metadata.redirect_uris.map(String) : [];
      if (!existing) {
        await current(db)
          .insertInto('clients')
          .values({
            client_id: clientId,
            metadata: JSON.stringify(metadata),
            registration_method: 'cimd',
            status: initial.status,
            ceiling: initial.ceiling === null ? null : JSON.stringify(initial.ceiling),
            status_reason: initial.reason,
            approved_redirect_uris: initial.status === 'approved' ? JSON.stringify(redirectUris) : null,
            source_ip: arrival.ip ?? null,
            user_agent: arrival.userAgent ?? null,
          })
          .onConflict((oc) => oc.column('client_id').doNothing())
          .execute();
        return { status: initial.status, ceiling: initial.ceiling, created: true, returnedToPending: false };
      }
      const changed = existing.status === 'approved' && existing.approved_redirect_uris !== null && !sameUris(existing.approved_redirect_uris, redirectUris);
      const status: ClientStatus = changed ? 'pending' : existing.status;
      await current(db)
        .updateTable('clients')
        .set({
          metadata: JSON.stringify(metadata),
          updated_at: sql<Date>`now()`,
          ...(changed
            ? { status, status_reason: 'its metadata document now lists other redirect URIs', status_changed_by: 'gatehouse', status_changed_at: sql<Date>`now()` }
            : {}),
        })
        .where('client_id', '=', clientId)
        .execute();
      return { status, ceiling: existing.ceiling, created: false, returnedToPending: changed };
    },
  };
}

export type ClientsRepository = ReturnType<typeof createClientsRepository>;
