/**
 * The public listener: the issuer (oidc-provider), the login and consent pages, and their assets,
 * and each registered MCP server's protected-resource metadata (resources/resource-metadata.routes.ts).
 */
import Koa, { type Middleware } from 'koa';
import type { Logger } from 'pino';
import type Provider from 'oidc-provider';
import { registrationCors } from '../http/cors.ts';
import { renderFailure, serveStylesheet, withRequestContext } from '../http/common.ts';
import { hostCookies } from '../http/host-cookies.ts';
import { securityHeaders } from '../http/security-headers.ts';
import type { Views } from '../http/views.ts';
import { createInteractionRouter, type InteractionRoutesDeps } from '../interactions/interaction.routes.ts';
import type { Metrics } from '../metrics/metrics.ts';
import { ROUTES } from '../oidc/profile.ts';
import { createResourceMetadataRouter } from '../resources/resource-metadata.routes.ts';

export interface PublicAppDeps extends InteractionRoutesDeps {
  provider: Provider;
  views: Views;
  logger: Logger;
  trustProxy: boolean;
  /** The issuer is https: HSTS, and `__Host-` Secure cookies whatever the last hop looked like. */
  https: boolean;
  registrationOpen: boolean;
  /** `/healthz` and `/readyz` (http/health.ts). */
  health: Middleware;
  /** Request counts and latencies (served on the admin listener only). */
  metrics: Metrics;
}

export function createPublicApp(deps: PublicAppDeps): Koa {
  const app = new Koa();
  app.proxy = deps.trustProxy;
  app.silent = true;
  app.on('error', (err: Error) => deps.logger.error({ err }, 'unhandled error'));

  // Outermost, so that it times everything and sees the final status. Route labels are templates
  // (routers, oidc-provider's routes) or these exact paths, answered before any router (the probes,
  // the stylesheet, and the endpoints' refusals before routing: rate limits, registration guard).
  app.use(deps.metrics.requestMetrics('public', ['/healthz', '/readyz', '/assets/gatehouse.css', ...Object.values(ROUTES)]));
  // Unexpected errors are a 500 without detail (conventions: never leak a stack trace).
  // First, so that errors and their pages carry the request id.
  if (deps.https) app.use(hostCookies);
  app.use(withRequestContext);
  app.use(async (ctx, next) => {
    try {
      await next();
    } catch (err) {
      renderFailure(ctx, err, deps.views, deps.logger);
    }
  });
  const headers = securityHeaders({ https: deps.https });
  app.use(headers);

  app.use(deps.health);
  app.use(serveStylesheet(deps.views));
  // Outside oidc-provider, so that every answer of /register carries CORS headers, the abuse
  // controls' 413/429/503 included: a browser-based client can then read why it was refused.
  if (deps.registrationOpen) app.use(registrationCors(ROUTES.registration));

  // Each registered MCP server's RFC 9728 metadata: public, no provider, session or cookie needed.
  const metadata = createResourceMetadataRouter({ resources: deps.resources, issuer: deps.provider.issuer });
  app.use(metadata.routes());

  const router = createInteractionRouter(deps);
  app.use(router.routes());
  app.use(router.allowedMethods());

  deps.provider.use(headers);
  // oidc-provider answers in its own Koa context: it hands its matched route to requestMetrics above.
  deps.provider.use(deps.metrics.innerRoute);
  const handle = deps.provider.callback();
  app.use((ctx) => {
    ctx.respond = false;
    return handle(ctx.req, ctx.res);
  });
  return app;
}
