/**
 * Console: connections. Who let which client use which MCP server with which scopes, when, and
 * when the client last got a token; filter by client or user; revoke one. Revoking deletes the
 * grant with its refresh tokens and codes (connections.repository.ts): the client's next refresh
 * fails with `invalid_grant`, and the user is asked for consent again next time. The revocation
 * and its audit event are one transaction.
 */
import Router from '@koa/router';
import type { Context } from 'koa';
import type { AccountsService } from '../accounts/accounts.service.ts';
import type { AuditLog } from '../audit/audit-log.ts';
import type { ClientsService } from '../clients/clients.service.ts';
import type { DB } from '../db/database.ts';
import { createConnectionsRepository, type Connection } from '../oidc/connections.repository.ts';
import type { ResourcesService } from '../resources/resources.service.ts';
import type { AdminState, ConsolePage } from './admin-app.ts';
import { createAdminOperations } from './operations.ts';

export interface ConnectionsDeps {
  db: DB;
  accounts: AccountsService;
  clients: ClientsService;
  resources: ResourcesService;
  audit: AuditLog;
  page: ConsolePage;
}

/** The page shows at most this many, newest first; the filters narrow it down. */
const PAGE_SIZE = 500;

const text = (value: unknown) => (typeof value === 'string' && value ? value : undefined);

/** The list's address with its filters, so a revocation returns to the same view. */
function listPath(filter: { clientId?: string | undefined; accountId?: string | undefined }) {
  const query = new URLSearchParams();
  if (filter.clientId) query.set('client', filter.clientId);
  if (filter.accountId) query.set('user', filter.accountId);
  const qs = query.toString();
  return qs ? `/connections?${qs}` : '/connections';
}

export function createConnectionsRouter(deps: ConnectionsDeps): Router<AdminState> {
  const router = new Router<AdminState>();
  const connections = createConnectionsRepository(deps.db);
  const operations = createAdminOperations({ db: deps.db, resources: deps.resources, clients: deps.clients, connections, accounts: deps.accounts, audit: deps.audit });
  const by = (ctx: Context) => `admin:${(ctx.state as AdminState).session!.email}`;

  router.get('/connections', async (ctx) => {
    const filter = { clientId: text(ctx.query.client), accountId: text(ctx.query.user) };
    const [list, resources, clients, users] = await Promise.all([
      connections.list({ ...filter, limit: PAGE_SIZE }),
      deps.resources.list(),
      deps.clients.list(),
      deps.accounts.list(),
    ]);
    const names = new Map(resources.map((r) => [r.uri, r.name]));
    const rows = list.map((c: Connection) => ({
      ...c,
      clientPath: `/clients/${encodeURIComponent(c.clientId)}`,
      grants: Object.entries(c.resources).map(([uri, scopes]) => ({ uri, name: names.get(uri), scopes })),
    }));
    await deps.page.render(ctx, 'admin/connections.njk', {
      title: 'Connections',
      connections: rows,
      filter,
      returnTo: listPath(filter),
      clients: clients.map((c) => ({ clientId: c.clientId, name: c.name })),
      users: users.map((u) => ({ id: u.id, email: u.email })),
      revoked: ctx.query.revoked === '1',
      truncated: list.length === PAGE_SIZE ? PAGE_SIZE : undefined,
    });
  });

  router.post('/connections/:grantId/revoke', async (ctx) => {
    const form = await deps.page.form(ctx);
    if (!form) return;
    const revoked = await operations.revokeConnection(ctx.params.grantId!, by(ctx));
    if (!revoked) {
      await deps.page.render(ctx, 'admin/not-found.njk', { title: 'Not found', what: 'That connection does not exist any more: it may have been revoked or expired.' }, 404);
      return;
    }
    const back = listPath({ clientId: text(form.get('client')), accountId: text(form.get('user')) });
    ctx.status = 303;
    ctx.redirect(`${back}${back.includes('?') ? '&' : '?'}revoked=1`);
  });

  return router;
}
