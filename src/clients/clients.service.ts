/**
 * Client onboarding decisions, shared by the CLI (and the admin console and API to come):
 * approve with a ceiling, change the ceiling, reject, suspend. Each decision is one transaction.
 */
import type { AuditLog } from '../audit/audit-log.ts';
import type { DB } from '../db/database.ts';
import type { ClientCeiling, ClientStatus } from '../db/schema.ts';
import { inTransaction } from '../db/unit-of-work.ts';
import type { ResourcesService } from '../resources/resources.service.ts';
import { createClientsRepository, type ClientRecord } from './clients.repository.ts';

export class ClientInputError extends Error {
  readonly code = 'invalid_client_decision';
}
export class ClientNotFoundError extends Error {
  readonly code = 'client_not_found';
}

/** One MCP server and the scopes a client may receive there, as an administrator names them. */
export interface CeilingEntry {
  resource: string;
  scopes: string[];
}

export function createClientsService(deps: { db: DB; resources: ResourcesService; audit: AuditLog }) {
  const repo = createClientsRepository(deps.db);

  async function existing(clientId: string): Promise<ClientRecord> {
    const client = await repo.get(clientId);
    if (!client) throw new ClientNotFoundError(`no client ${clientId} is known`);
    return client;
  }

  /** Checks each entry against the registered MCP servers; returns the ceiling keyed by canonical URI. */
  async function validCeiling(entries: CeilingEntry[]): Promise<ClientCeiling> {
    const ceiling: ClientCeiling = {};
    const problems: string[] = [];
    for (const entry of entries) {
      const resource = await deps.resources.resolve(entry.resource);
      if (!resource) {
        problems.push(`${entry.resource} is not a registered MCP server`);
        continue;
      }
      const offered = new Set(resource.scopes.map((s) => s.name));
      const unknown = entry.scopes.filter((s) => !offered.has(s));
      if (unknown.length) problems.push(`${resource.uri} does not offer ${unknown.join(', ')}`);
      if (entry.scopes.length === 0) problems.push(`choose at least one scope of ${resource.uri}`);
      ceiling[resource.uri] = [...new Set([...(ceiling[resource.uri] ?? []), ...entry.scopes])];
    }
    if (entries.length === 0) problems.push('choose at least one MCP server and its scopes');
    if (problems.length) throw new ClientInputError(problems.join('; '));
    return ceiling;
  }

  async function decide(clientId: string, status: Exclude<ClientStatus, 'approved' | 'pending'>, by: string, reason: string | null) {
    return inTransaction(deps.db, async () => {
      const before = await existing(clientId);
      await repo.changeStatus(clientId, { status, reason, by });
      // Issue 3 §4: suspending (or rejecting) a client revokes all its grants and refresh tokens at once.
      const revoked = await repo.revokeTokens(clientId);
      await deps.audit.record({
        event: status === 'rejected' ? 'client.rejected' : 'client.suspended',
        actor: by,
        clientId,
        details: { reason, previous_status: before.status, revoked_rows: revoked },
      });
      return existing(clientId);
    });
  }

  return {
    list: (filter: { status?: ClientStatus | undefined } = {}) => repo.list(filter),
    get: (clientId: string) => repo.get(clientId),
    usage: (clientId: string) => repo.usage(clientId),

    /**
     * Approves a client with a ceiling (replacing any earlier one). Approving again with a lower
     * ceiling takes effect at the client's next refresh.
     */
    async approve(clientId: string, entries: CeilingEntry[], by: string): Promise<ClientRecord> {
      const ceiling = await validCeiling(entries);
      return inTransaction(deps.db, async () => {
        const client = await existing(clientId);
        await repo.changeStatus(clientId, { status: 'approved', reason: null, by, ceiling, approvedRedirectUris: client.redirectUris });
        await deps.audit.record({
          event: client.status === 'approved' ? 'client.ceiling_changed' : 'client.approved',
          actor: by,
          clientId,
          details: { ceiling, previous_ceiling: client.ceiling, previous_status: client.status, redirect_uris: client.redirectUris },
        });
        return existing(clientId);
      });
    },

    /** Deletes never-decided pending clients older than `seconds` (GATEHOUSE_PENDING_CLIENT_TTL), each with an audit event. */
    async expireStalePending(seconds: number): Promise<string[]> {
      return inTransaction(deps.db, async () => {
        const expired = await repo.deleteStalePending(seconds);
        for (const clientId of expired) {
          await deps.audit.record({ event: 'client.expired', actor: 'gatehouse', clientId, details: { pending_longer_than_seconds: seconds } });
        }
        return expired;
      });
    },

    reject: (clientId: string, by: string, reason: string | null = null) => decide(clientId, 'rejected', by, reason),
    suspend: (clientId: string, by: string, reason: string | null = null) => decide(clientId, 'suspended', by, reason),
  };
}

export type ClientsService = ReturnType<typeof createClientsService>;
