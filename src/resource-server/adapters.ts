/**
 * Thin adapters. Express (and anything with `(req, res, next)` over Node's http objects) and Koa.
 * They add nothing to the checks: they call {@link ResourceServer.authenticate} / `verify` and put
 * the result where each framework keeps request state.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { TokenError } from './errors.ts';
import type { McpAuthInfo, Requirement, ResourceServer } from './resource-server.ts';
import { toMcpAuthInfo } from './resource-server.ts';

/** Scopes for a request: fixed, or computed from it (e.g. from the parsed MCP message in `req.body`). */
export type ScopesFor<R> = readonly string[] | ((req: R) => readonly string[] | Promise<readonly string[]>);

type NodeNext = (err?: unknown) => void;

/**
 * Express-shaped middleware: verifies the token, sets `req.auth` (the MCP SDK's `AuthInfo`, read by
 * `StreamableHTTPServerTransport.handleRequest`) and calls `next()`, or answers 401/403.
 */
export function requireToken<R extends IncomingMessage>(rs: ResourceServer, options: { scopes?: ScopesFor<R> } = {}) {
  return async (req: R, res: ServerResponse, next: NodeNext): Promise<void> => {
    try {
      const scopes = typeof options.scopes === 'function' ? await options.scopes(req) : options.scopes;
      const verified = await rs.authenticate(req, res, { scopes });
      if (verified) next();
    } catch (err) {
      next(err);
    }
  };
}

/** Express-shaped middleware serving the RFC 9728 metadata; passes other requests on. */
export function serveProtectedResourceMetadata(rs: ResourceServer) {
  return async (req: IncomingMessage, res: ServerResponse, next: NodeNext): Promise<void> => {
    try {
      if (!(await rs.serveMetadata(req, res))) next();
    } catch (err) {
      next(err);
    }
  };
}

/** The part of a Koa context the adapter uses (no dependency on Koa's types). */
interface KoaLikeContext {
  req: IncomingMessage;
  method: string;
  path: string;
  href: string;
  status: number;
  body: unknown;
  state: Record<string, unknown>;
  set(field: string, value: string): void;
}

/** Koa middleware: sets `ctx.state.auth` (and `ctx.req.auth` for the MCP SDK), or answers 401/403. */
export function koaRequireToken<C extends KoaLikeContext>(rs: ResourceServer, options: { scopes?: ScopesFor<C> } = {}) {
  return async (ctx: C, next: () => Promise<unknown>): Promise<void> => {
    const scopes = typeof options.scopes === 'function' ? await options.scopes(ctx) : options.scopes;
    const requirement: Requirement = { scopes };
    try {
      const verified = await rs.verify(ctx.req.headers.authorization, requirement, {
        proof: ctx.req.headers.dpop,
        method: ctx.method,
        url: ctx.href,
      });
      const auth: McpAuthInfo = toMcpAuthInfo(verified, rs.resource);
      ctx.state.auth = auth;
      (ctx.req as IncomingMessage & { auth?: McpAuthInfo }).auth = auth;
    } catch (err) {
      if (!(err instanceof TokenError)) throw err;
      const answer = rs.challenge(err, requirement);
      ctx.status = answer.status;
      for (const [k, v] of Object.entries(answer.headers)) ctx.set(k, v);
      ctx.set('Cache-Control', 'no-store');
      ctx.body = answer.body;
      return;
    }
    await next();
  };
}

/** Koa middleware serving the RFC 9728 metadata; passes other requests on. */
export function koaServeProtectedResourceMetadata<C extends KoaLikeContext & { respond?: boolean; res: ServerResponse }>(rs: ResourceServer) {
  return async (ctx: C, next: () => Promise<unknown>): Promise<void> => {
    if (await rs.serveMetadata(ctx.req, ctx.res)) {
      ctx.respond = false;
      return;
    }
    await next();
  };
}
