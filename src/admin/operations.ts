/**
 * Administrative changes that the console, the admin API and the CLI all offer, each done once
 * here: the change and its audit event in one transaction, with the same event details whichever
 * front end the administrator used. (Client decisions live in clients/clients.service.ts.)
 */
import type { AuditLog } from '../audit/audit-log.ts';
import type { ClientsService } from '../clients/clients.service.ts';
import type { DB } from '../db/database.ts';
import { inTransaction } from '../db/unit-of-work.ts';
import type { Connection, ConnectionsRepository } from '../oidc/connections.repository.ts';
import type { Resource } from '../resources/resources.repository.ts';
import type { AddResourceInput, ResourcesService } from '../resources/resources.service.ts';

export interface OperationsDeps {
  db: DB;
  resources: ResourcesService;
  clients: ClientsService;
  connections: ConnectionsRepository;
  audit: AuditLog;
}

export function createAdminOperations(deps: OperationsDeps) {
  return {
    /** Registers an MCP server; throws the resources service's input errors. */
    addResource(input: AddResourceInput, actor: string): Promise<Resource> {
      return inTransaction(deps.db, async () => {
        const added = await deps.resources.add(input);
        await deps.audit.record({
          event: 'resource.added',
          actor,
          resource: added.uri,
          details: { name: added.name, scopes: added.scopes.map((s) => s.name), default_scopes: added.defaultScopes, access_token_ttl: added.accessTokenTtl },
        });
        return added;
      });
    },

    /** Unregisters an MCP server, recording which approved clients and live connections it strands. False if it was gone. */
    removeResource(resource: Resource, actor: string): Promise<boolean> {
      return inTransaction(deps.db, async () => {
        const withCeiling = (await deps.clients.list({ status: 'approved' })).filter((c) => c.ceiling !== null && c.ceiling[resource.uri]);
        const usage = await deps.connections.resourceUsage(resource.uri);
        if (!(await deps.resources.remove(resource.uri))) return false;
        await deps.audit.record({
          event: 'resource.removed',
          actor,
          resource: resource.uri,
          details: { name: resource.name, scopes: resource.scopes.map((s) => s.name), clients_with_ceiling: withCeiling.map((c) => c.clientId), live_connections: usage.connections },
        });
        return true;
      });
    },

    /** Revokes a connection (a grant and every token under it); undefined if it does not exist (any more). */
    revokeConnection(grantId: string, actor: string): Promise<Connection | undefined> {
      return inTransaction(deps.db, async () => {
        const connection = await deps.connections.find(grantId);
        if (!connection) return undefined;
        const rows = await deps.connections.revoke(connection.grantId);
        await deps.audit.record({
          event: 'grant.revoked',
          actor,
          clientId: connection.clientId,
          accountId: connection.accountId,
          resource: Object.keys(connection.resources)[0],
          details: { grant_id: connection.grantId, email: connection.email, resources: connection.resources, revoked_rows: rows },
        });
        return connection;
      });
    },
  };
}

export type AdminOperations = ReturnType<typeof createAdminOperations>;
