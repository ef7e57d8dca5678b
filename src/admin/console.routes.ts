/**
 * Console pages over the shared services: Pending (the approval queue), Clients (filter, detail,
 * approve with a ceiling, reject, suspend) and Audit.
 */
import Router from '@koa/router';
import type { Context } from 'koa';
import type { AuditLog } from '../audit/audit-log.ts';
import { AUDIT_EVENTS } from '../audit/audit-log.ts';
import type { ClientRecord } from '../clients/clients.repository.ts';
import { ClientInputError, ClientNotFoundError, type CeilingEntry, type ClientsService } from '../clients/clients.service.ts';
import type { ClientStatus } from '../db/schema.ts';
import type { ResourcesService } from '../resources/resources.service.ts';
import type { AdminState, ConsolePage } from './admin-app.ts';

const STATUSES: ClientStatus[] = ['pending', 'approved', 'rejected', 'suspended'];

export interface ConsoleDeps {
  clients: ClientsService;
  resources: ResourcesService;
  audit: AuditLog;
  page: ConsolePage;
}

const hostOf = (uri: string) => {
  const url = URL.parse(uri);
  return url ? url.host || `${url.protocol}//` : uri;
};

/** A client as the pages show it. */
function present(client: ClientRecord) {
  return {
    ...client,
    detailPath: `/clients/${encodeURIComponent(client.clientId)}`,
    redirects: client.redirectUris.map((uri) => ({ uri, host: hostOf(uri), localhost: /^http:\/\/(localhost|127\.0\.0\.1|\[::1\])[:/]/.test(uri) })),
    publisherHost: client.registrationMethod === 'cimd' ? hostOf(client.clientId) : undefined,
    requestedScope: client.requested['*']?.join(' '),
    requestedAt: Object.entries(client.requested).filter(([key]) => key !== '*').map(([uri, scopes]) => ({ uri, scopes })),
    addedRedirects: client.approvedRedirectUris ? client.redirectUris.filter((u) => !client.approvedRedirectUris!.includes(u)) : [],
    removedRedirects: client.approvedRedirectUris ? client.approvedRedirectUris.filter((u) => !client.redirectUris.includes(u)) : [],
  };
}

export function createConsoleRouter(deps: ConsoleDeps): Router<AdminState> {
  const router = new Router<AdminState>();
  const by = (ctx: Context) => `admin:${(ctx.state as AdminState).session!.email}`;

  router.get('/', (ctx) => {
    ctx.status = 303;
    ctx.redirect('/pending');
  });

  router.get('/pending', async (ctx) => {
    const clients = (await deps.clients.list({ status: 'pending' })).map(present);
    await deps.page.render(ctx, 'admin/pending.njk', { title: 'Pending approval', clients });
  });

  router.get('/clients', async (ctx) => {
    const status = STATUSES.includes(ctx.query.status as ClientStatus) ? (ctx.query.status as ClientStatus) : undefined;
    const clients = (await deps.clients.list({ status })).map(present);
    await deps.page.render(ctx, 'admin/clients.njk', { title: 'Clients', clients, status, statuses: STATUSES });
  });

  async function detail(ctx: Context, clientId: string, problem?: string, status = 200) {
    const client = await deps.clients.get(clientId);
    if (!client) {
      await deps.page.render(ctx, 'admin/not-found.njk', { title: 'Not found', what: `No client ${clientId} is known.` }, 404);
      return;
    }
    const resources = await deps.resources.list();
    const usage = await deps.clients.usage(clientId);
    const events = await deps.audit.list({ clientId, limit: 20 });
    const askedAtRegistration = new Set(client.requested['*'] ?? []);
    const choices = resources.map((r) => ({
      name: r.name,
      uri: r.uri,
      scopes: r.scopes.map((s) => ({
        name: s.name,
        description: s.description,
        value: `${r.uri} ${s.name}`,
        // Approved: the current ceiling. Not yet approved: what it asked for there, else the MCP server's defaults.
        checked:
          client.ceiling === null
            ? true
            : client.status === 'approved' || Object.keys(client.ceiling).length > 0
              ? Boolean(client.ceiling[r.uri]?.includes(s.name))
              : client.requested[r.uri]
                ? client.requested[r.uri]!.includes(s.name)
                : r.defaultScopes.includes(s.name),
        requested: Boolean(client.requested[r.uri]?.includes(s.name)) || askedAtRegistration.has(s.name),
      })),
    }));
    await deps.page.render(
      ctx,
      'admin/client.njk',
      { title: client.name, client: present(client), choices, usage, events, problem, metadataJson: JSON.stringify(client.metadata, null, 2) },
      status,
    );
  }

  router.get('/clients/:id', (ctx) => detail(ctx, ctx.params.id!));

  router.post('/clients/:id/approve', async (ctx) => {
    const form = await deps.page.form(ctx);
    if (!form) return;
    const clientId = ctx.params.id!;
    // Each checkbox is "<resource URI> <scope>".
    const entries = new Map<string, string[]>();
    for (const value of form.getAll('scope')) {
      const space = value.lastIndexOf(' ');
      if (space <= 0) continue;
      const resource = value.slice(0, space);
      entries.set(resource, [...(entries.get(resource) ?? []), value.slice(space + 1)]);
    }
    const ceiling: CeilingEntry[] = [...entries].map(([resource, scopes]) => ({ resource, scopes }));
    try {
      await deps.clients.approve(clientId, ceiling, by(ctx));
    } catch (err) {
      if (err instanceof ClientInputError) return detail(ctx, clientId, err.message, 400);
      if (err instanceof ClientNotFoundError) return detail(ctx, clientId);
      throw err;
    }
    ctx.status = 303;
    ctx.redirect(`/clients/${encodeURIComponent(clientId)}`);
  });

  for (const action of ['reject', 'suspend'] as const) {
    router.post(`/clients/:id/${action}`, async (ctx) => {
      const form = await deps.page.form(ctx);
      if (!form) return;
      const clientId = ctx.params.id!;
      const reason = (form.get('reason') ?? '').trim().slice(0, 500) || null;
      try {
        await deps.clients[action](clientId, by(ctx), reason);
      } catch (err) {
        if (err instanceof ClientNotFoundError) return detail(ctx, clientId);
        throw err;
      }
      ctx.status = 303;
      ctx.redirect(`/clients/${encodeURIComponent(clientId)}`);
    });
  }

  router.get('/audit', async (ctx) => {
    const event = AUDIT_EVENTS.includes(ctx.query.event as never) ? String(ctx.query.event) : undefined;
    const clientId = typeof ctx.query.client === 'string' && ctx.query.client ? ctx.query.client : undefined;
    const before = typeof ctx.query.before === 'string' && /^\d+$/.test(ctx.query.before) ? ctx.query.before : undefined;
    const events = await deps.audit.list({ event, clientId, before, limit: 100 });
    await deps.page.render(ctx, 'admin/audit.njk', {
      title: 'Audit',
      events: events.map((e) => ({ ...e, detailsJson: JSON.stringify(e.details) })),
      event,
      clientId,
      eventNames: AUDIT_EVENTS,
      next: events.length === 100 ? events.at(-1)!.id : undefined,
    });
  });

  return router;
}
