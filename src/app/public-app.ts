/**
 * The public listener: the issuer (oidc-provider), the login and consent pages, and their assets.
 */
import { randomUUID } from 'node:crypto';
import Koa from 'koa';
import type { Logger } from 'pino';
import type Provider from 'oidc-provider';
import { registrationCors } from '../http/cors.ts';
import { runInRequestContext } from '../http/request-context.ts';
import { securityHeaders } from '../http/security-headers.ts';
import type { Views } from '../http/views.ts';
import { createInteractionRouter, type InteractionRoutesDeps } from '../interactions/interaction.routes.ts';
import { ROUTES } from '../oidc/profile.ts';

export interface PublicAppDeps extends InteractionRoutesDeps {
  provider: Provider;
  views: Views;
  logger: Logger;
  trustProxy: boolean;
  registrationOpen: boolean;
}

export function createPublicApp(deps: PublicAppDeps): Koa {
  const app = new Koa();
  app.proxy = deps.trustProxy;
  app.silent = true;
  app.on('error', (err: Error) => deps.logger.error({ err }, 'unhandled error'));

  // Unexpected errors are a 500 without detail (conventions: never leak a stack trace).
  app.use(async (ctx, next) => {
    try {
      await next();
    } catch (err) {
      deps.logger.error({ err, path: ctx.path }, 'request failed');
      ctx.status = 500;
      ctx.type = 'html';
      ctx.body = deps.views.render('error.njk', {
        title: 'Something went wrong',
        message: 'Gatehouse could not complete this request. Try again in a moment.',
      });
    }
  });
  app.use(securityHeaders);
  app.use((ctx, next) => {
    const requestId = randomUUID();
    ctx.set('X-Request-Id', requestId);
    return runInRequestContext({ ip: ctx.ip, userAgent: ctx.get('user-agent').slice(0, 512) || undefined, requestId }, next);
  });

  app.use(async (ctx, next) => {
    if (ctx.method === 'GET' && ctx.path === '/assets/gatehouse.css') {
      ctx.type = 'text/css';
      ctx.set('Cache-Control', 'public, max-age=3600');
      ctx.body = deps.views.css;
      return;
    }
    await next();
  });

  const router = createInteractionRouter(deps);
  app.use(router.routes());
  app.use(router.allowedMethods());

  deps.provider.use(securityHeaders);
  if (deps.registrationOpen) deps.provider.use(registrationCors(ROUTES.registration));
  const handle = deps.provider.callback();
  app.use((ctx) => {
    ctx.respond = false;
    return handle(ctx.req, ctx.res);
  });
  return app;
}
