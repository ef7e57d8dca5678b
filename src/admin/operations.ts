/**
 * Administrative changes that the console, the admin API and the CLI all offer, each done once
 * here: the change and its audit event in one transaction, with the same event details whichever
 * front end the administrator used. (Client decisions live in clients/clients.service.ts.)
 */
import type { Role } from '../accounts/accounts.repository.ts';
import type { AccountsService } from '../accounts/accounts.service.ts';
import type { AuditLog } from '../audit/audit-log.ts';
import type { ClientsService } from '../clients/clients.service.ts';
import type { DB } from '../db/database.ts';
import { inTransaction } from '../db/unit-of-work.ts';
import { createApiTokens } from './api-tokens.ts';
import type { Connection, ConnectionsRepository } from '../oidc/connections.repository.ts';
import type { Resource } from '../resources/resources.repository.ts';
import { resourceUpdateDetails, scopeIncludes, type AddResourceInput, type ResourcesService, type UpdateResourceInput } from '../resources/resources.service.ts';

export interface OperationsDeps {
  db: DB;
  resources: ResourcesService;
  clients: ClientsService;
  connections: ConnectionsRepository;
  accounts: AccountsService;
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
          details: {
            name: added.name,
            scopes: added.scopes.map((s) => s.name),
            scope_includes: scopeIncludes(added.scopes),
            default_scopes: added.defaultScopes,
            access_token_ttl: added.accessTokenTtl,
          },
        });
        return added;
      });
    },

    /** Changes an MCP server's name, scopes, defaults or token lifetime (never its URI); throws the service's errors. */
    updateResource(uri: string, changes: Partial<UpdateResourceInput>, actor: string): Promise<Resource> {
      return inTransaction(deps.db, async () => {
        const { previous, updated } = await deps.resources.edit(uri, changes);
        await deps.audit.record({ event: 'resource.updated', actor, resource: updated.uri, details: resourceUpdateDetails(previous, updated) });
        return updated;
      });
    },

    /** Creates a user or an administrator; throws AccountInputError for a bad email, a short password or a taken email. */
    createUser(email: string, password: string, role: Role, actor: string) {
      return inTransaction(deps.db, async () => {
        const created = await deps.accounts.create(email, password, role);
        await deps.audit.record({ event: 'user.created', actor, accountId: created.id, details: { email: created.email, role: created.role } });
        return created;
      });
    },

    /**
     * Disables an account (ending its sessions and refresh tokens); `byAccountId` may not disable
     * itself. An administrator's personal API tokens are revoked too, so enabling the account again
     * does not bring them back (issue 15 §9).
     */
    disableUser(id: string, byAccountId: string | undefined, actor: string) {
      return inTransaction(deps.db, async () => {
        const changed = await deps.accounts.disable(id, byAccountId);
        const revokedApiTokens = await createApiTokens(deps.db).revokeAllOf(changed.id);
        await deps.audit.record({ event: 'user.disabled', actor, accountId: changed.id, details: { email: changed.email, ended_sessions: changed.endedSessions, revoked_api_tokens: revokedApiTokens } });
        return changed;
      });
    },

    enableUser(id: string, actor: string) {
      return inTransaction(deps.db, async () => {
        const changed = await deps.accounts.enable(id);
        await deps.audit.record({ event: 'user.enabled', actor, accountId: changed.id, details: { email: changed.email, ended_sessions: changed.endedSessions } });
        return changed;
      });
    },

    /** Sets a new password, ends the account's sessions and revokes its personal API tokens (issue 15 §9). */
    resetPassword(id: string, password: string, actor: string) {
      return inTransaction(deps.db, async () => {
        const changed = await deps.accounts.resetPassword(id, password);
        const revokedApiTokens = await createApiTokens(deps.db).revokeAllOf(changed.id);
        await deps.audit.record({ event: 'user.password_reset', actor, accountId: changed.id, details: { email: changed.email, ended_sessions: changed.endedSessions, revoked_api_tokens: revokedApiTokens } });
        return changed;
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
