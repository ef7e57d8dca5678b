/**
 * Middleware both listeners (the issuer and the admin console) use.
 */
import { randomUUID } from 'node:crypto';
import type { Context, Next } from 'koa';
import { runInRequestContext } from './request-context.ts';
import type { Views } from './views.ts';

/** Runs the request in a request context (address, user agent, a request id also sent as X-Request-Id). */
export function withRequestContext(ctx: Context, next: Next): Promise<void> {
  const requestId = randomUUID();
  ctx.set('X-Request-Id', requestId);
  return runInRequestContext({ ip: ctx.ip, userAgent: ctx.get('user-agent').slice(0, 512) || undefined, requestId }, next);
}

/** Serves the one stylesheet at /assets/gatehouse.css. */
export function serveStylesheet(views: Views) {
  return async (ctx: Context, next: Next): Promise<void> => {
    if (ctx.method === 'GET' && ctx.path === '/assets/gatehouse.css') {
      ctx.type = 'text/css';
      ctx.set('Cache-Control', 'public, max-age=3600');
      ctx.body = views.css;
      return;
    }
    await next();
  };
}
