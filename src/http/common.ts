/**
 * Middleware both listeners (the issuer and the admin console) use.
 */
import { randomUUID } from 'node:crypto';
import type { Context, Next } from 'koa';
import type { Logger } from 'pino';
import { isDatabaseUnavailable } from '../db/errors.ts';
import { requestContext, runInRequestContext } from './request-context.ts';
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

/** An unexpected failure as the user sees it: no detail, a request id; 503 when the database is away. */
export function renderFailure(ctx: Context, err: unknown, views: Views, logger: Logger): void {
  const requestId = requestContext()?.requestId;
  const unavailable = isDatabaseUnavailable(err);
  logger.error({ err, path: ctx.path, request_id: requestId }, 'request failed');
  ctx.status = unavailable ? 503 : 500;
  if (unavailable) ctx.set('Retry-After', '5');
  ctx.type = 'html';
  ctx.body = views.render('error.njk', {
    title: unavailable ? 'Gatehouse is briefly unavailable' : 'Something went wrong',
    message: unavailable ? 'Gatehouse cannot reach its database right now. Try again in a few seconds.' : 'Gatehouse could not complete this request. Try again in a moment.',
    requestId,
  });
}
