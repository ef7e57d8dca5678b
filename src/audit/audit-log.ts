/**
 * The audit trail (issue 3; hardened and exported in issue 4): typed event names, one row per
 * event in `audit_events` (append-only), written in the request's transaction when there is one,
 * so an event is recorded exactly when what it describes is. Source IP, user agent and request id
 * come from the request context. Never pass a secret in `details`.
 */
import type { Logger } from 'pino';
import type { DB } from '../db/database.ts';
import { onCommit, write } from '../db/unit-of-work.ts';
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

export function createAuditLog(deps: { db: DB; logger?: Logger | undefined; sink?: AuditSink | undefined }) {
  return {
    async record(event: AuditEvent): Promise<void> {
      const context = requestContext();
      const fields = {
        event: event.event,
        actor: event.actor ?? null,
        client_id: event.clientId ?? null,
        account_id: event.accountId ?? null,
        resource: event.resource ?? null,
        source_ip: context?.ip ?? null,
        user_agent: context?.userAgent ?? null,
        request_id: context?.requestId ?? null,
      };
      const { sink } = deps;
      const stream = (row: Record<string, unknown>) => {
        if (!sink) return;
        // Only what was committed reaches the SIEM (docs/audit-events.md lists the fields).
        const occurredAt = row.occurred_at instanceof Date ? row.occurred_at : new Date(String(row.occurred_at));
        const line = { type: 'gatehouse.audit', id: String(row.id), occurred_at: occurredAt.toISOString(), ...fields, details: event.details ?? {}, hash: row.hash };
        onCommit(() => sink.write(line));
      };
      // Now, or (a token request) with the request's other writes in one statement.
      const rows = await write(
        deps.db,
        (db) => db.insertInto('audit_events').values({ ...fields, details: JSON.stringify(event.details ?? {}) }).returning(['id', 'occurred_at', 'hash']),
        { audit: true, onRows: (queued) => queued[0] && stream(queued[0]) },
      );
      if (rows?.[0]) stream(rows[0]);
      deps.logger?.info({ audit: event.event, client_id: event.clientId, account_id: event.accountId, request_id: context?.requestId }, event.event);
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
