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
import type { AuditLog } from '../audit/audit-log.ts';
import { ClientInputError, ClientNotFoundError, type CeilingEntry, type ClientsService } from '../clients/clients.service.ts';
import type { DB } from '../db/database.ts';
import type { ClientStatus } from '../db/schema.ts';
import { FormBodyError } from '../http/form-body.ts';
import { readJson } from '../http/json-body.ts';
import { ResourceExistsError } from '../resources/resources.repository.ts';
import { ResourceInputError, type ResourcesService } from '../resources/resources.service.ts';
import type { AdminState } from './admin-app.ts';
import { createApiTokens } from './api-tokens.ts';
import { OPENAPI_DOCUMENT } from './openapi.ts';

const STATUSES: ClientStatus[] = ['pending', 'approved', 'rejected', 'suspended'];
const UNSAFE = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

export interface ApiDeps {
  db: DB;
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

const reasonFrom = (body: Record<string, unknown>) => {
  if (body.reason === undefined || body.reason === null) return null;
  if (typeof body.reason !== 'string' || body.reason.length > 500) throw new ApiError(400, 'invalid_request', 'reason must be a string of at most 500 characters');
  return body.reason.trim() || null;
};

export function createApiRouter(deps: ApiDeps): Router<AdminState> {
  const router = new Router<AdminState>({ prefix: '/api/v1' });
  const tokens = createApiTokens(deps.db);
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
            : err instanceof ClientInputError || err instanceof ResourceInputError || err instanceof ResourceExistsError
              ? new ApiError(400, 'invalid_request', err.message)
              : err instanceof ClientNotFoundError
                ? new ApiError(404, 'not_found', err.message)
                : undefined;
      if (!known) throw err;
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
    const resource = await deps.resources.add({
      uri: body.uri,
      name: body.name,
      scopes: scopes.map((s) => ({ name: String((s as { name?: unknown }).name ?? ''), description: String((s as { description?: unknown }).description ?? '') })),
      defaultScopes: Array.isArray(body.defaultScopes) ? body.defaultScopes.map(String) : undefined,
      accessTokenTtl: ttl,
    });
    ctx.status = 201;
    ctx.body = resource;
  });
  router.delete('/resources', async (ctx) => {
    const uri = ctx.query.uri;
    if (typeof uri !== 'string') throw new ApiError(400, 'invalid_request', 'the uri query parameter is required');
    if (!(await deps.resources.remove(uri))) throw new ApiError(404, 'not_found', `no resource ${uri} is registered`);
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
    const { token, info } = await tokens.create(caller(ctx).accountId, body.name.trim());
    ctx.status = 201;
    ctx.body = { ...info, token, note: 'the token is shown once: store it now' };
  });
  router.delete('/tokens/:id', async (ctx) => {
    if (!(await tokens.revoke(caller(ctx).accountId, ctx.params.id!))) throw new ApiError(404, 'not_found', 'no such active token of yours');
    ctx.status = 204;
  });

  return router;
}
