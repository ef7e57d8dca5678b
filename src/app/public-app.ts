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
import { refuseHostileInput } from '../http/hostile-input.ts';
import { requestContext } from '../http/request-context.ts';
import { MAX_REGISTRATION_BODY, oversizedRegistration } from '../clients/registration-guard.ts';
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

/** oidc-provider's own limit on the bodies it parses (lib/shared/selective_body.js). */
const PROVIDER_BODY_LIMIT = 56 * 1024;

/**
 * No NUL or unpaired surrogate past this point, and no body past its size limit (issue 15 §7, §8;
 * http/hostile-input.ts). Bodies for oidc-provider are read ahead here; the token endpoint's body is
 * checked by its rate limit instead (oidc/token-rate-limit.ts), so that a refused attempt still
 * counts against the client; our own pages' forms by their reader (http/form-body.ts).
 *
 * Refusals are RFC-shaped: at /register `invalid_client_metadata` (RFC 7591 §3.2.2; a body too large:
 * the registration guard's 413), at /authorize an `invalid_request` error page (RFC 6749 §4.1.2.1:
 * the redirect URI is not yet trusted, so nothing is sent back to it), elsewhere a JSON
 * `invalid_request` (RFC 6749 §5.2).
 */
function publicInputGuard(deps: PublicAppDeps) {
  const registration = (path: string) => deps.registrationOpen && (path === ROUTES.registration || path.startsWith(`${ROUTES.registration}/`));
  return refuseHostileInput({
    bodyLimit(ctx) {
      if (ctx.path === ROUTES.token || ctx.path.startsWith('/interaction/')) return undefined;
      return registration(ctx.path) ? MAX_REGISTRATION_BODY : PROVIDER_BODY_LIMIT;
    },
    refuse(ctx, refusal) {
      ctx.status = refusal.status;
      ctx.set('Cache-Control', 'no-store');
      if (registration(ctx.path)) {
        ctx.body = refusal.status === 413 ? { error: oversizedRegistration().error, error_description: oversizedRegistration().description } : { error: 'invalid_client_metadata', error_description: refusal.description };
      } else if (ctx.path === ROUTES.authorization || ctx.path.startsWith('/interaction/')) {
        ctx.type = 'html';
        ctx.body = deps.views.render('error.njk', {
          title: 'The application sent an invalid request',
          message: 'Gatehouse stopped here rather than send you back to an address it cannot trust.',
          error: 'invalid_request',
          description: refusal.description,
          requestId: requestContext()?.requestId,
        });
      } else {
        ctx.body = { error: 'invalid_request', error_description: refusal.description };
      }
    },
  });
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
  app.use(publicInputGuard(deps));

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
