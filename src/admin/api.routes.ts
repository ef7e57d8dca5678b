/**
 * The admin JSON API under /api/v1 on the admin listener: the console's operations for scripts
 * and automation, over the same services. Authenticated by a personal admin API token
 * (`Authorization: Bearer gh_pat_…`) or by the console session, in which case state-changing
 * requests must also carry the session's CSRF token in `X-CSRF-Token`. The OpenAPI document at
 * /api/v1/openapi.json describes it.
 */
import { timingSafeEqual } from 'node:crypto';
import Router from '@koa/router';
import type { Context, Next } from 'koa';
import { AccountInputError, AccountNotFoundError, type AccountsService } from '../accounts/accounts.service.ts';
import type { Role } from '../accounts/accounts.repository.ts';
import type { AuditLog } from '../audit/audit-log.ts';
import { ClientInputError, ClientNotFoundError, type CeilingEntry, type ClientsService } from '../clients/clients.service.ts';
import type { DB } from '../db/database.ts';
import { isDatabaseUnavailable } from '../db/errors.ts';
import type { ClientStatus, ResourceScope } from '../db/schema.ts';
import { inTransaction } from '../db/unit-of-work.ts';
import { FormBodyError } from '../http/form-body.ts';
import { readJson } from '../http/json-body.ts';
import { createConnectionsRepository } from '../oidc/connections.repository.ts';
import { ResourceExistsError } from '../resources/resources.repository.ts';
import { ResourceInputError, ResourceNotFoundError, type ResourcesService } from '../resources/resources.service.ts';
import type { AdminState } from './admin-app.ts';
import { createApiTokens } from './api-tokens.ts';
import { OPENAPI_DOCUMENT } from './openapi.ts';
import { createAdminOperations } from './operations.ts';

const STATUSES: ClientStatus[] = ['pending', 'approved', 'rejected', 'suspended'];
const ROLES: Role[] = ['user', 'admin'];
/** GET /connections answers at most this many, newest first (as the console's page). */
const CONNECTIONS_LIMIT = 500;
const UNSAFE = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

export interface ApiDeps {
  db: DB;
  accounts: AccountsService;
  clients: ClientsService;
  resources: ResourcesService;
  audit: AuditLog;
  /** The console session's CSRF token, when the request carries a session. */
  sessionCsrf: (ctx: Context) => string | undefined;
}

interface ApiCaller {
  accountId: string;
  email: string;
  via: 'session' | 'token';
  tokenName?: string;
}

class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const sameToken = (a: string, b: string) => {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
};

function ceilingFrom(body: Record<string, unknown>): CeilingEntry[] {
  const ceiling = body.ceiling;
  if (!Array.isArray(ceiling)) throw new ApiError(400, 'invalid_request', 'ceiling must be an array of {"resource": URI, "scopes": [names]}');
  return ceiling.map((entry, i) => {
    const e = entry as { resource?: unknown; scopes?: unknown };
    if (typeof e?.resource !== 'string' || !Array.isArray(e.scopes) || !e.scopes.every((s) => typeof s === 'string')) {
      throw new ApiError(400, 'invalid_request', `ceiling[${i}] must be {"resource": URI, "scopes": [names]}`);
    }
    return { resource: e.resource, scopes: e.scopes as string[] };
  });
}

/** A scope's optional `includes` (names of the narrower scopes it satisfies), or a 400 saying what is wrong. */
function includesFrom(value: unknown, i: number): { includes?: string[] } {
  if (value === undefined || value === null) return {};
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) {
    throw new ApiError(400, 'invalid_request', `scopes[${i}].includes must be an array of scope names`);
  }
  return { includes: value.map((v: string) => v.trim()) };
}

/** `scopes` as [{"name", "description", "includes"?}], or a 400 saying what is wrong. */
function scopesFrom(value: unknown): ResourceScope[] {
  const shape = 'scopes must be an array of {"name": string, "description": string, "includes"?: [names]}';
  if (!Array.isArray(value)) throw new ApiError(400, 'invalid_request', shape);
  return value.map((entry, i) => {
    const s = entry as { name?: unknown; description?: unknown; includes?: unknown } | null;
    if (typeof s?.name !== 'string' || typeof s.description !== 'string') throw new ApiError(400, 'invalid_request', `scopes[${i}]: ${shape}`);
    return { name: s.name.trim(), description: s.description.trim(), ...includesFrom(s.includes, i) };
  });
}

function stringsFrom(value: unknown, field: string): string[] {
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) throw new ApiError(400, 'invalid_request', `${field} must be an array of strings`);
  return value as string[];
}

const reasonFrom = (body: Record<string, unknown>) => {
  if (body.reason === undefined || body.reason === null) return null;
  if (typeof body.reason !== 'string' || body.reason.length > 500) throw new ApiError(400, 'invalid_request', 'reason must be a string of at most 500 characters');
  return body.reason.trim() || null;
};

export function createApiRouter(deps: ApiDeps): Router<AdminState> {
  const router = new Router<AdminState>({ prefix: '/api/v1' });
  const tokens = createApiTokens(deps.db);
  const connections = createConnectionsRepository(deps.db);
  const operations = createAdminOperations({ db: deps.db, resources: deps.resources, clients: deps.clients, connections, accounts: deps.accounts, audit: deps.audit });
  const callers = new WeakMap<Context, ApiCaller>();
  const caller = (ctx: Context) => callers.get(ctx)!;
  const actor = (ctx: Context) => {
    const c = caller(ctx);
    return c.via === 'token' ? `admin:${c.email} (API token ${c.tokenName})` : `admin:${c.email}`;
  };

  // Errors are JSON, RFC 6749-style.
  router.use(async (ctx: Context, next: Next) => {
    try {
      await next();
    } catch (err) {
      const known =
        err instanceof ApiError
          ? err
          : err instanceof FormBodyError
            ? new ApiError(err.status, err.status === 415 ? 'unsupported_media_type' : 'invalid_request', err.message)
            : err instanceof ClientInputError || err instanceof ResourceInputError || err instanceof ResourceExistsError || err instanceof AccountInputError
              ? new ApiError(400, 'invalid_request', err.message)
              : err instanceof ClientNotFoundError || err instanceof ResourceNotFoundError || err instanceof AccountNotFoundError
                ? new ApiError(404, 'not_found', err.message)
                : isDatabaseUnavailable(err)
                  ? new ApiError(503, 'temporarily_unavailable', 'Gatehouse cannot reach its database right now; retry in a few seconds')
                  : undefined;
      if (!known) throw err;
      if (known.status === 503) ctx.set('Retry-After', '5');
      ctx.status = known.status;
      ctx.body = { error: known.code, error_description: known.message };
    }
    ctx.set('Cache-Control', 'no-store');
  });

  router.get('/openapi.json', (ctx) => {
    ctx.body = OPENAPI_DOCUMENT;
  });

  // Authentication for everything else.
  router.use(async (ctx: Context, next: Next) => {
    const authorization = ctx.get('authorization');
    if (authorization) {
      const match = /^Bearer\s+(\S+)$/i.exec(authorization);
      const found = match ? await tokens.authenticate(match[1]!) : undefined;
      if (!found) {
        ctx.set('WWW-Authenticate', 'Bearer realm="gatehouse-admin", error="invalid_token"');
        throw new ApiError(401, 'invalid_token', 'the API token is unknown, revoked, or no longer belongs to an administrator');
      }
      callers.set(ctx, { accountId: found.accountId, email: found.email, via: 'token', tokenName: found.tokenName });
      return next();
    }
    const session = (ctx.state as AdminState).session;
    if (!session) {
      ctx.set('WWW-Authenticate', 'Bearer realm="gatehouse-admin"');
      throw new ApiError(401, 'unauthorized', 'sign in to the console, or send a personal API token as a Bearer token');
    }
    if (UNSAFE.has(ctx.method)) {
      const expected = deps.sessionCsrf(ctx) ?? '';
      const given = ctx.get('x-csrf-token');
      if (!given || !sameToken(expected, given)) throw new ApiError(403, 'csrf', 'with a session cookie, send the session\'s CSRF token in X-CSRF-Token');
    }
    callers.set(ctx, { accountId: session.accountId, email: session.email, via: 'session' });
    return next();
  });

  router.get('/me', (ctx) => {
    const c = caller(ctx);
    ctx.body = { email: c.email, via: c.via, ...(c.tokenName ? { token_name: c.tokenName } : {}) };
  });

  // Clients.
  router.get('/clients', async (ctx) => {
    const status = ctx.query.status;
    if (status !== undefined && !STATUSES.includes(status as ClientStatus)) {
      throw new ApiError(400, 'invalid_request', `status must be one of ${STATUSES.join(', ')}`);
    }
    ctx.body = { clients: await deps.clients.list({ status: status as ClientStatus | undefined }) };
  });
  router.get('/clients/:id', async (ctx) => {
    const client = await deps.clients.get(ctx.params.id!);
    if (!client) throw new ApiError(404, 'not_found', `no client ${ctx.params.id} is known`);
    ctx.body = { ...client, usage: await deps.clients.usage(client.clientId) };
  });
  router.post('/clients/:id/approve', async (ctx) => {
    const body = await readJson(ctx);
    ctx.body = await deps.clients.approve(ctx.params.id!, ceilingFrom(body), actor(ctx));
  });
  router.post('/clients/:id/reject', async (ctx) => {
    ctx.body = await deps.clients.reject(ctx.params.id!, actor(ctx), reasonFrom(await readJson(ctx)));
  });
  router.post('/clients/:id/suspend', async (ctx) => {
    ctx.body = await deps.clients.suspend(ctx.params.id!, actor(ctx), reasonFrom(await readJson(ctx)));
  });

  // MCP servers (resources).
  router.get('/resources', async (ctx) => {
    ctx.body = { resources: await deps.resources.list() };
  });
  router.post('/resources', async (ctx) => {
    const body = await readJson(ctx);
    const scopes = Array.isArray(body.scopes) ? body.scopes : undefined;
    if (typeof body.uri !== 'string' || typeof body.name !== 'string' || !scopes) {
      throw new ApiError(400, 'invalid_request', 'uri, name and scopes ([{"name", "description"}]) are required');
    }
    const ttl = body.accessTokenTtl ?? 600;
    if (typeof ttl !== 'number') throw new ApiError(400, 'invalid_request', 'accessTokenTtl must be a number of seconds');
    const uri = body.uri;
    const name = body.name;
    const resource = await operations.addResource(
      {
        uri,
        name,
        scopes: scopes.map((s, i) => {
          const scope = s as { name?: unknown; description?: unknown; includes?: unknown } | null;
          return { name: String(scope?.name ?? ''), description: String(scope?.description ?? ''), ...includesFrom(scope?.includes, i) };
        }),
        defaultScopes: Array.isArray(body.defaultScopes) ? body.defaultScopes.map(String) : undefined,
        accessTokenTtl: ttl,
      },
      actor(ctx),
    );
    ctx.status = 201;
    ctx.body = resource;
  });
  const resourceUri = (ctx: Context) => {
    const uri = ctx.query.uri;
    if (typeof uri !== 'string' || !uri) throw new ApiError(400, 'invalid_request', 'the uri query parameter is required');
    return uri;
  };
  // Edit: everything but the URI (the audience of every token issued for it). Omitted fields keep their values.
  router.put('/resources', async (ctx) => {
    const uri = resourceUri(ctx);
    const body = await readJson(ctx);
    const changes: { name?: string; scopes?: ResourceScope[]; defaultScopes?: string[]; accessTokenTtl?: number } = {};
    if (body.name !== undefined) {
      if (typeof body.name !== 'string') throw new ApiError(400, 'invalid_request', 'name must be a string');
      changes.name = body.name;
    }
    if (body.scopes !== undefined) changes.scopes = scopesFrom(body.scopes);
    if (body.defaultScopes !== undefined) changes.defaultScopes = stringsFrom(body.defaultScopes, 'defaultScopes');
    if (body.accessTokenTtl !== undefined) {
      if (typeof body.accessTokenTtl !== 'number') throw new ApiError(400, 'invalid_request', 'accessTokenTtl must be a number of seconds');
      changes.accessTokenTtl = body.accessTokenTtl;
    }
    if (body.uri !== undefined) {
      const registered = await deps.resources.resolve(uri);
      const named = typeof body.uri === 'string' ? await deps.resources.resolve(body.uri) : undefined;
      if (registered && named?.uri !== registered.uri) {
        throw new ApiError(400, 'invalid_request', 'the uri cannot change: it is the audience of every token issued for this MCP server (remove it and add another)');
      }
    }
    ctx.body = await operations.updateResource(uri, changes, actor(ctx));
  });
  router.delete('/resources', async (ctx) => {
    const uri = resourceUri(ctx);
    const resource = await deps.resources.resolve(uri);
    if (!resource) throw new ApiError(404, 'not_found', `no resource ${uri} is registered`);
    if (!(await operations.removeResource(resource, actor(ctx)))) throw new ApiError(404, 'not_found', `no resource ${uri} is registered`);
    ctx.status = 204;
  });

  // Users (local accounts and administrators). Never their password hashes.
  router.get('/users', async (ctx) => {
    ctx.body = { users: await deps.accounts.list() };
  });
  router.post('/users', async (ctx) => {
    const body = await readJson(ctx);
    if (typeof body.email !== 'string' || typeof body.password !== 'string') throw new ApiError(400, 'invalid_request', 'email and password are required strings');
    const role = body.role ?? 'user';
    if (!ROLES.includes(role as Role)) throw new ApiError(400, 'invalid_request', `role must be one of ${ROLES.join(', ')}`);
    const email = body.email;
    const password = body.password;
    const created = await operations.createUser(email, password, role as Role, actor(ctx));
    const account = (await deps.accounts.get(created.id))!;
    ctx.status = 201;
    ctx.body = account;
  });
  const userActions = {
    // An administrator cannot disable their own account (nor lock out the token they are using).
    disable: (ctx: Context, id: string) => operations.disableUser(id, caller(ctx).accountId, actor(ctx)),
    enable: (ctx: Context, id: string) => operations.enableUser(id, actor(ctx)),
  } as const;
  for (const [action, run] of Object.entries(userActions)) {
    router.post(`/users/:id/${action}`, async (ctx) => {
      ctx.body = await run(ctx, ctx.params.id!);
    });
  }
  router.post('/users/:id/password', async (ctx) => {
    const body = await readJson(ctx);
    if (typeof body.password !== 'string') throw new ApiError(400, 'invalid_request', 'password is a required string');
    const password = body.password;
    ctx.body = await operations.resetPassword(ctx.params.id!, password, actor(ctx));
  });

  // Connections (the grants users gave clients).
  router.get('/connections', async (ctx) => {
    const str = (v: unknown) => (typeof v === 'string' && v ? v : undefined);
    ctx.body = { connections: await connections.list({ clientId: str(ctx.query.client_id), accountId: str(ctx.query.account_id), limit: CONNECTIONS_LIMIT }) };
  });
  router.delete('/connections/:grantId', async (ctx) => {
    const revoked = await operations.revokeConnection(ctx.params.grantId!, actor(ctx));
    if (!revoked) throw new ApiError(404, 'not_found', 'no such connection: it may have been revoked or expired');
    ctx.status = 204;
  });

  // Audit.
  router.get('/audit', async (ctx) => {
    const q = ctx.query;
    const str = (v: unknown) => (typeof v === 'string' && v ? v : undefined);
    const limit = q.limit === undefined ? 100 : Number(q.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 500) throw new ApiError(400, 'invalid_request', 'limit must be between 1 and 500');
    const before = str(q.before);
    if (before && !/^\d+$/.test(before)) throw new ApiError(400, 'invalid_request', 'before must be an event id');
    ctx.body = { events: await deps.audit.list({ event: str(q.event), clientId: str(q.client_id), accountId: str(q.account_id), before, limit }) };
  });

  // Personal API tokens of the caller.
  router.get('/tokens', async (ctx) => {
    ctx.body = { tokens: await tokens.list(caller(ctx).accountId) };
  });
  router.post('/tokens', async (ctx) => {
    const body = await readJson(ctx);
    if (typeof body.name !== 'string' || !body.name.trim() || body.name.length > 100) {
      throw new ApiError(400, 'invalid_request', 'name is required (at most 100 characters)');
    }
    const { token, info } = await inTransaction(deps.db, async () => {
      const created = await tokens.create(caller(ctx).accountId, String(body.name).trim());
      await deps.audit.record({ event: 'admin.api_token_created', actor: actor(ctx), accountId: caller(ctx).accountId, details: { token_id: created.info.id, name: created.info.name } });
      return created;
    });
    ctx.status = 201;
    ctx.body = { ...info, token, note: 'the token is shown once: store it now' };
  });
  // Any administrator may revoke any administrator's token (a leaked token must not wait for its
  // owner, issue 15 §9); the audit event names the owner and who revoked it.
  router.delete('/tokens/:id', async (ctx) => {
    await inTransaction(deps.db, async () => {
      const revoked = await tokens.revokeAny(ctx.params.id ?? '');
      if (!revoked) throw new ApiError(404, 'not_found', 'no such active API token');
      await deps.audit.record({
        event: 'admin.api_token_revoked',
        actor: actor(ctx),
        accountId: revoked.accountId,
        details: { token_id: ctx.params.id, name: revoked.name, ...(revoked.accountId !== caller(ctx).accountId ? { owner_account_id: revoked.accountId } : {}) },
      });
    });
    ctx.status = 204;
  });

  return router;
}
