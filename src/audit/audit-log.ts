/**
 * The audit trail (issue 3; hardened and exported in issue 4): typed event names, one row per
 * event in `audit_events` (append-only), written in the request's transaction when there is one,
 * so an event is recorded exactly when what it describes is. Source IP, user agent and request id
 * come from the request context. Never pass a secret in `details`.
 *
 * Writers only append (issue 14 §4): no lock, no read of another row. Each row carries `mac`, an
 * HMAC over its fields under a key derived from the key-encryption key (audit-mac.ts), and the
 * insert trigger stamps its transaction id and time (migration 0009); the sealer (sealer.ts)
 * turns committed rows into signed checkpoints afterwards.
 */
import type { Logger } from 'pino';
import type { DB } from '../db/database.ts';
import { onCommit, write } from '../db/unit-of-work.ts';
import { createAuditKeys, type AuditKeys } from './audit-keys.ts';
import { computeMac, wellFormed } from './audit-mac.ts';
import type { AuditSink } from './audit-sink.ts';
import { requestContext } from '../http/request-context.ts';

export const AUDIT_EVENTS = [
  'client.registered',
  'client.recognised',
  'client.metadata_fetched',
  'client.metadata_refused',
  'client.approved',
  'client.ceiling_changed',
  'client.rejected',
  'client.suspended',
  'client.returned_to_pending',
  'client.expired',
  'resource.added',
  'resource.updated',
  'resource.removed',
  'user.created',
  'user.disabled',
  'user.enabled',
  'user.password_reset',
  'user.sign_in_succeeded',
  'user.sign_in_failed',
  'admin.sign_in_succeeded',
  'admin.sign_in_failed',
  'admin.signed_out',
  'admin.api_token_created',
  'admin.api_token_revoked',
  'consent.granted',
  'consent.denied',
  'token.issued',
  'token.refreshed',
  'token.refreshed_within_grace',
  'token.reuse_detected',
  'token.revoked',
  'key.rotated',
  'keys.rewrapped',
  'grant.revoked',
  'config.warning',
] as const;

export type AuditEventName = (typeof AUDIT_EVENTS)[number];

export interface AuditEvent {
  event: AuditEventName;
  /** Who acted: `user:<id>`, `admin:<email>`, `client:<id>`, `cli:<os user>`, `gatehouse`. */
  actor?: string | undefined;
  clientId?: string | undefined;
  accountId?: string | undefined;
  resource?: string | undefined;
  details?: Record<string, unknown>;
}

export interface AuditRecord extends Required<Omit<AuditEvent, 'details'>> {
  id: string;
  occurredAt: Date;
  sourceIp: string | null;
  userAgent: string | null;
  requestId: string | null;
  details: Record<string, unknown>;
}

export interface AuditLogDeps {
  db: DB;
  logger?: Logger | undefined;
  sink?: AuditSink | undefined;
  /**
   * The MAC key (audit-keys.ts, from GATEHOUSE_KEY_ENCRYPTION_KEY). Without it, the public
   * development key's, as createSecretBox does without a key-encryption key: the server and the
   * CLI always pass the configured one.
   */
  keys?: AuditKeys | undefined;
}

export function createAuditLog(deps: AuditLogDeps) {
  const keys = deps.keys ?? createAuditKeys(undefined);
  let recorded = 0;
  return {
    async record(event: AuditEvent): Promise<void> {
      const context = requestContext();
      // Exactly what is stored (text that PostgreSQL can hold), so that the MAC verifies on what comes back.
      const fields = {
        event: event.event,
        actor: wellFormed(event.actor),
        client_id: wellFormed(event.clientId),
        account_id: wellFormed(event.accountId),
        resource: wellFormed(event.resource),
        source_ip: wellFormed(context?.ip),
        user_agent: wellFormed(context?.userAgent),
        request_id: wellFormed(context?.requestId),
      };
      const details = event.details ?? {};
      const mac = computeMac(keys, { ...fields, details });
      const { sink } = deps;
      const stream = (row: Record<string, unknown>) => {
        if (!sink) return;
        // Only what was committed reaches the SIEM (docs/audit-events.md lists the fields).
        const occurredAt = row.occurred_at instanceof Date ? row.occurred_at : new Date(String(row.occurred_at));
        const txid = row.txid === null || row.txid === undefined ? null : String(row.txid);
        const line = { type: 'gatehouse.audit', id: String(row.id), txid, occurred_at: occurredAt.toISOString(), ...fields, details, mac };
        onCommit(() => sink.write(line));
      };
      // Now, or (a token request) with the request's other writes in one statement.
      const rows = await write(
        deps.db,
        (db) => db.insertInto('audit_events').values({ ...fields, details: JSON.stringify(details), mac }).returning(['id', 'occurred_at', 'txid']),
        { audit: true, onRows: (queued) => queued[0] && stream(queued[0]) },
      );
      if (rows?.[0]) stream(rows[0]);
      recorded++;
      deps.logger?.info({ audit: event.event, client_id: event.clientId, account_id: event.accountId, request_id: context?.requestId }, event.event);
    },

    /** How many events this log has recorded (in a deferred unit of work: queued) since it was created. */
    get recorded(): number {
      return recorded;
    },

    /** Newest first. */
    async list(filter: { event?: string | undefined; clientId?: string | undefined; accountId?: string | undefined; limit?: number; before?: string | undefined } = {}) {
      let query = deps.db.selectFrom('audit_events').selectAll().orderBy('id', 'desc').limit(Math.min(filter.limit ?? 100, 500));
      if (filter.event) query = query.where('event', '=', filter.event);
      if (filter.clientId) query = query.where('client_id', '=', filter.clientId);
      if (filter.accountId) query = query.where('account_id', '=', filter.accountId);
      if (filter.before) query = query.where('id', '<', filter.before);
      return (await query.execute()).map(
        (row): AuditRecord => ({
          id: String(row.id),
          occurredAt: row.occurred_at,
          event: row.event as AuditEventName,
          actor: row.actor ?? '',
          clientId: row.client_id ?? '',
          accountId: row.account_id ?? '',
          resource: row.resource ?? '',
          sourceIp: row.source_ip,
          userAgent: row.user_agent,
          requestId: row.request_id,
          details: row.details,
        }),
      );
    },
  };
}

export type AuditLog = ReturnType<typeof createAuditLog>;
