/**
 * Console: MCP servers (the resources Gatehouse issues tokens for, RFC 8707). List them; add one
 * (URI, name, scopes as NAME=DESCRIPTION lines, default scopes, access-token lifetime); edit one
 * (everything but its URI, which is the audience of every token issued for it, including which
 * narrower scopes each scope includes); remove one after
 * typing its URI. Each change and its audit event are one transaction; bad input is a 400 page that
 * says what is wrong and changes nothing.
 */
import Router from '@koa/router';
import type { Context } from 'koa';
import type { AuditLog } from '../audit/audit-log.ts';
import type { ClientsService } from '../clients/clients.service.ts';
import { parseDuration } from '../config/config.ts';
import type { DB } from '../db/database.ts';
import type { ResourceScope } from '../db/schema.ts';
import { createConnectionsRepository } from '../oidc/connections.repository.ts';
import { ResourceExistsError, type Resource } from '../resources/resources.repository.ts';
import { ResourceInputError, ResourceNotFoundError, type ResourcesService } from '../resources/resources.service.ts';
import type { AdminState, ConsolePage } from './admin-app.ts';
import { createAdminOperations } from './operations.ts';
import type { AccountsService } from '../accounts/accounts.service.ts';

export interface ServersDeps {
  db: DB;
  accounts: AccountsService;
  resources: ResourcesService;
  clients: ClientsService;
  audit: AuditLog;
  page: ConsolePage;
  /** Seconds; prefilled in the add form. */
  defaultAccessTokenTtl?: number | undefined;
}

/** 600 → "10m", 3600 → "1h", 45 → "45s": what the lifetime fields show and accept. */
export function compactDuration(seconds: number): string {
  if (seconds % 86400 === 0) return `${seconds / 86400}d`;
  if (seconds % 3600 === 0) return `${seconds / 3600}h`;
  if (seconds % 60 === 0) return `${seconds / 60}m`;
  return `${seconds}s`;
}

/** 600 → "10 minutes": for reading. */
export function readableDuration(seconds: number): string {
  const [n, unit] =
    seconds % 86400 === 0 ? [seconds / 86400, 'day'] : seconds % 3600 === 0 ? [seconds / 3600, 'hour'] : seconds % 60 === 0 ? [seconds / 60, 'minute'] : [seconds, 'second'];
  return `${n} ${unit}${n === 1 ? '' : 's'}`;
}

/** Reads NAME=DESCRIPTION lines; blank lines are skipped. */
function parseScopeLines(text: string, problems: string[]): ResourceScope[] {
  const scopes: ResourceScope[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    if (!line.trim()) return;
    const eq = line.indexOf('=');
    if (eq <= 0) {
      problems.push(`scopes line ${i + 1} ("${line.trim().slice(0, 60)}") must be NAME=DESCRIPTION`);
      return;
    }
    scopes.push({ name: line.slice(0, eq).trim(), description: line.slice(eq + 1).trim() });
  });
  return scopes;
}

function parseLifetime(value: string, problems: string[]): number {
  const seconds = parseDuration(value);
  if (seconds === undefined) {
    problems.push('access-token lifetime must be a number of seconds, or a duration such as 10m or 1h');
    return Number.NaN;
  }
  return seconds;
}

const words = (value: string | null) => [...new Set((value ?? '').split(/[\s,]+/).filter(Boolean))];

/** A scope's includes field: names separated by spaces or commas, kept as typed (the service refuses a name given twice). */
const includedNames = (value: string) => value.split(/[\s,]+/).filter(Boolean);

/** A resource as the list shows it. */
function present(resource: Resource) {
  return {
    ...resource,
    path: `/servers/${resource.id}`,
    lifetime: readableDuration(resource.accessTokenTtl),
    scopes: resource.scopes.map((s) => ({ ...s, isDefault: resource.defaultScopes.includes(s.name) })),
  };
}

/** What the edit form shows: the stored resource, or what the administrator just submitted. */
interface EditState {
  name: string;
  lifetime: string;
  newScopes: string;
  descriptions: Record<string, string>;
  /** Scope name → its includes field as typed (names separated by spaces or commas). */
  includes: Record<string, string>;
  defaults: string[];
  removed: string[];
}

export function createServersRouter(deps: ServersDeps): Router<AdminState> {
  const router = new Router<AdminState>();
  const connections = createConnectionsRepository(deps.db);
  const operations = createAdminOperations({ db: deps.db, resources: deps.resources, clients: deps.clients, connections, accounts: deps.accounts, audit: deps.audit });
  const by = (ctx: Context) => `admin:${(ctx.state as AdminState).session!.email}`;

  async function listPage(ctx: Context, problem?: string, form?: Record<string, string>, status = 200) {
    const resources = (await deps.resources.list()).map(present);
    await deps.page.render(
      ctx,
      'admin/servers.njk',
      {
        title: 'MCP servers',
        resources,
        problem,
        form: form ?? { uri: '', name: '', scopes: '', defaults: '', lifetime: compactDuration(deps.defaultAccessTokenTtl ?? 600) },
      },
      status,
    );
  }

  /** Who relies on each scope of `resource`: approved clients whose ceiling names it, live connections holding it. */
  async function usageOf(resource: Resource) {
    const clients = (await deps.clients.list({ status: 'approved' })).filter((c) => c.ceiling !== null && c.ceiling[resource.uri]);
    const grants = await connections.resourceUsage(resource.uri);
    const scope = (name: string) => ({
      ceilings: clients.filter((c) => c.ceiling![resource.uri]!.includes(name)).length,
      connections: grants.scopes.get(name) ?? 0,
    });
    const offered = resource.scopes.map((s) => s.name);
    return {
      clients: clients.map((c) => ({
        name: c.name,
        clientId: c.clientId,
        path: `/clients/${encodeURIComponent(c.clientId)}`,
        // Its ceiling here names only scopes the server no longer offers: it gets no token for it.
        stranded: !c.ceiling![resource.uri]!.some((name) => offered.includes(name)),
      })),
      connections: grants.connections,
      scope,
    };
  }

  async function serverPage(ctx: Context, resource: Resource, options: { problem?: string | undefined; removeProblem?: string; state?: EditState; status?: number } = {}) {
    const usage = await usageOf(resource);
    const state: EditState = options.state ?? {
      name: resource.name,
      lifetime: compactDuration(resource.accessTokenTtl),
      newScopes: '',
      descriptions: Object.fromEntries(resource.scopes.map((s) => [s.name, s.description])),
      includes: Object.fromEntries(resource.scopes.map((s) => [s.name, (s.includes ?? []).join(' ')])),
      defaults: resource.defaultScopes,
      removed: [],
    };
    const scopes = resource.scopes.map((s) => {
      const used = usage.scope(s.name);
      return {
        name: s.name,
        description: state.descriptions[s.name] ?? s.description,
        includes: state.includes[s.name] ?? (s.includes ?? []).join(' '),
        isDefault: state.defaults.includes(s.name),
        remove: state.removed.includes(s.name),
        ceilings: used.ceilings,
        connections: used.connections,
        inUse: used.ceilings > 0 || used.connections > 0,
      };
    });
    // After a save that removed scopes still named by ceilings or grants (?removed=a,b).
    const justRemoved = typeof ctx.query.removed === 'string' ? words(ctx.query.removed).filter((n) => !resource.scopes.some((s) => s.name === n)) : [];
    const removedInUse = justRemoved
      .map((name) => ({ name, ...usage.scope(name) }))
      .filter((s) => s.ceilings > 0 || s.connections > 0);
    await deps.page.render(
      ctx,
      'admin/server.njk',
      {
        title: resource.name,
        resource: present(resource),
        scopes,
        state,
        usage,
        problem: options.problem,
        removeProblem: options.removeProblem,
        saved: ctx.query.saved === '1' && !options.problem,
        removedInUse,
        stranded: usage.clients.filter((c) => c.stranded),
      },
      options.status ?? 200,
    );
  }

  async function found(ctx: Context): Promise<Resource | undefined> {
    const resource = await deps.resources.get(ctx.params.id!);
    if (!resource) await deps.page.render(ctx, 'admin/not-found.njk', { title: 'Not found', what: 'No such MCP server is registered.' }, 404);
    return resource;
  }

  router.get('/servers', (ctx) => listPage(ctx));

  router.post('/servers', async (ctx) => {
    const form = await deps.page.form(ctx);
    if (!form) return;
    const submitted = {
      uri: (form.get('uri') ?? '').trim(),
      name: form.get('name') ?? '',
      scopes: form.get('scopes') ?? '',
      defaults: form.get('default_scopes') ?? '',
      lifetime: (form.get('access_token_ttl') ?? '').trim(),
    };
    const problems: string[] = [];
    const scopes = parseScopeLines(submitted.scopes, problems);
    const accessTokenTtl = parseLifetime(submitted.lifetime, problems);
    if (problems.length) return listPage(ctx, problems.join('; '), submitted, 400);
    let added: Resource;
    try {
      added = await operations.addResource({ uri: submitted.uri, name: submitted.name, scopes, defaultScopes: words(submitted.defaults), accessTokenTtl }, by(ctx));
    } catch (err) {
      if (err instanceof ResourceInputError || err instanceof ResourceExistsError) return listPage(ctx, err.message, submitted, 400);
      throw err;
    }
    ctx.status = 303;
    ctx.redirect(`/servers/${added.id}?saved=1`);
  });

  router.get('/servers/:id', async (ctx) => {
    const resource = await found(ctx);
    if (resource) await serverPage(ctx, resource);
  });

  router.post('/servers/:id', async (ctx) => {
    const form = await deps.page.form(ctx);
    if (!form) return;
    const resource = await found(ctx);
    if (!resource) return;
    // Existing scopes are read by their stored names, so a stale or edited form cannot rename one.
    const state: EditState = {
      name: form.get('name') ?? '',
      lifetime: (form.get('access_token_ttl') ?? '').trim(),
      newScopes: form.get('new_scopes') ?? '',
      descriptions: Object.fromEntries(resource.scopes.map((s) => [s.name, form.get(`description:${s.name}`) ?? s.description])),
      // A form without the field (an older page) keeps what the scope includes.
      includes: Object.fromEntries(resource.scopes.map((s) => [s.name, form.get(`includes:${s.name}`) ?? (s.includes ?? []).join(' ')])),
      defaults: form.getAll('default'),
      removed: form.getAll('remove'),
    };
    const problems: string[] = [];
    const added = parseScopeLines(state.newScopes, problems);
    const accessTokenTtl = parseLifetime(state.lifetime, problems);
    if (problems.length) return serverPage(ctx, resource, { problem: problems.join('; '), state, status: 400 });
    const kept = resource.scopes
      .filter((s) => !state.removed.includes(s.name))
      .map((s) => ({ name: s.name, description: (state.descriptions[s.name] ?? '').trim(), includes: includedNames(state.includes[s.name] ?? '') }));
    const scopes = [...kept, ...added];
    // A scope being removed is no longer a default; none ticked means every scope (as when adding).
    const defaultScopes = state.defaults.filter((d) => kept.some((s) => s.name === d));
    const removed = resource.scopes.filter((s) => state.removed.includes(s.name)).map((s) => s.name);
    try {
      await operations.updateResource(resource.uri, { name: state.name, scopes, defaultScopes, accessTokenTtl }, by(ctx));
    } catch (err) {
      if (err instanceof ResourceInputError) return serverPage(ctx, resource, { problem: err.message, state, status: 400 });
      if (err instanceof ResourceNotFoundError) return found(ctx);
      throw err;
    }
    ctx.status = 303;
    ctx.redirect(`/servers/${resource.id}?saved=1${removed.length ? `&removed=${encodeURIComponent(removed.join(','))}` : ''}`);
  });

  router.post('/servers/:id/remove', async (ctx) => {
    const form = await deps.page.form(ctx);
    if (!form) return;
    const resource = await found(ctx);
    if (!resource) return;
    if ((form.get('confirm') ?? '').trim() !== resource.uri) {
      return serverPage(ctx, resource, { removeProblem: `To remove this MCP server, type its URI exactly: ${resource.uri}`, status: 400 });
    }
    await operations.removeResource(resource, by(ctx));
    ctx.status = 303;
    ctx.redirect('/servers');
  });

  return router;
}
