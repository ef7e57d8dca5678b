/**
 * The admin listener: the console (server-rendered, no JavaScript needed) on its own port.
 *
 * Every page needs an admin session (argon2id sign-in, HttpOnly SameSite=Strict cookie, Secure and
 * __Host- prefixed under https). Every form carries the session's CSRF token, and a state-changing
 * request whose Origin (or Sec-Fetch-Site) says it comes from another site is refused before
 * anything else runs. Sign-in attempts are reserved before the password is checked, and lock the
 * account (from one address, or one known device) and the address out with backoff
 * (accounts/sign-in-throttle.ts).
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import Koa, { type Context, type Next } from 'koa';
import Router from '@koa/router';
import type { Logger } from 'pino';
import type { AccountsService } from '../accounts/accounts.service.ts';
import type { DeviceCookies } from '../accounts/device-cookies.ts';
import type { AuditLog } from '../audit/audit-log.ts';
import type { ClientsService } from '../clients/clients.service.ts';
import type { DB } from '../db/database.ts';
import { FormBodyError, HostileInputError, readForm } from '../http/form-body.ts';
import { refuseHostileInput } from '../http/hostile-input.ts';
import { renderFailure, serveStylesheet, withRequestContext } from '../http/common.ts';
import { securityHeaders } from '../http/security-headers.ts';
import type { Views } from '../http/views.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { ResourcesService } from '../resources/resources.service.ts';
import { createAdminSessions, type AdminSession } from './admin-sessions.ts';
import { createApiRouter } from './api.routes.ts';
import { createConnectionsRouter } from './connections.routes.ts';
import { createConsoleRouter } from './console.routes.ts';
import { createServersRouter } from './servers.routes.ts';
import { createSignInThrottle } from '../accounts/sign-in-throttle.ts';
import { createUsersRouter } from './users.routes.ts';
import { createAdminOperations } from './operations.ts';
import { createConnectionsRepository } from '../oidc/connections.repository.ts';

export interface AdminAppDeps {
  db: DB;
  accounts: AccountsService;
  clients: ClientsService;
  resources: ResourcesService;
  audit: AuditLog;
  views: Views;
  logger: Logger;
  /** The console's origin, e.g. https://admin.auth.example.com. */
  adminUrl: string;
  trustProxy: boolean;
  /** Seconds; prefilled for a new MCP server (GATEHOUSE_ACCESS_TOKEN_TTL). */
  defaultAccessTokenTtl?: number | undefined;
  /** Both listeners' Prometheus metrics, served at GET /metrics. */
  metrics: Metrics;
  /** Signed per-account device cookies: a known device keeps its own sign-in budget. */
  deviceCookies: DeviceCookies;
}

export interface AdminState {
  session?: AdminSession;
}

/** What every console page gets: who is signed in, the CSRF token, the pending count for the navigation. */
export interface ConsolePage {
  render(ctx: Context, view: string, context: Record<string, unknown>, status?: number): Promise<void>;
  /** Reads a form and checks its CSRF token; undefined (after answering 403) when it fails. */
  form(ctx: Context): Promise<URLSearchParams | undefined>;
}

export function createAdminApp(deps: AdminAppDeps): Koa {
  const app = new Koa<AdminState>();
  app.proxy = deps.trustProxy;
  app.silent = true;
  const secure = new URL(deps.adminUrl).protocol === 'https:';
  const cookieName = secure ? '__Host-gh_admin' : 'gh_admin';
  const cookieOptions = { httpOnly: true, sameSite: 'strict' as const, secure, path: '/', overwrite: true };
  const sessions = createAdminSessions(deps.db);
  const throttle = createSignInThrottle(deps.db);

  // Outermost, so that it times everything and sees the final status (route labels: metrics/metrics.ts).
  app.use(deps.metrics.requestMetrics('admin', ['/metrics', '/favicon.ico', '/assets/gatehouse.css']));
  // First, so that errors and their pages carry the request id.
  app.use(withRequestContext);
  app.use(async (ctx, next) => {
    try {
      await next();
    } catch (err) {
      if (err instanceof HostileInputError && ctx.method === 'POST' && ctx.path === '/sign-in') {
        // The sign-in form again, with the reason (issue 15 §7); nothing read from it is used.
        return signInPage(ctx, 400, 'Your email or password contains a character Gatehouse does not accept. Check it and try again.');
      }
      if (err instanceof FormBodyError) {
        ctx.status = err.status;
        ctx.type = 'html';
        ctx.body = deps.views.render('error.njk', { title: 'Something was wrong with the form', message: err.message });
        return;
      }
      renderFailure(ctx, err, deps.views, deps.logger);
    }
  });
  app.use(securityHeaders({ https: secure }));
  // No NUL or unpaired surrogate in a path or query (issue 15 §7; http/hostile-input.ts): the API's
  // filters and ids answer a JSON `invalid_request`, the console an error page. Bodies are checked
  // by their readers (http/form-body.ts, http/json-body.ts).
  app.use(
    refuseHostileInput({
      bodyLimit: () => undefined,
      refuse(ctx, refusal) {
        ctx.status = refusal.status;
        ctx.set('Cache-Control', 'no-store');
        if (ctx.path === '/api/v1' || ctx.path.startsWith('/api/v1/')) {
          ctx.body = { error: 'invalid_request', error_description: refusal.description };
        } else {
          ctx.type = 'html';
          ctx.body = deps.views.render('error.njk', { title: 'Something was wrong with the request', message: refusal.description });
        }
      },
    }),
  );
  app.use(async (ctx, next) => {
    // Under an https GATEHOUSE_ADMIN_URL the console is reached over TLS (natively or through a
    // terminating proxy): the session cookie is Secure whatever this hop looks like.
    if (secure) (ctx.cookies as unknown as { secure: boolean }).secure = true;
    await next();
  });

  // Cross-origin state changes are refused outright (CSRF defence in depth, next to the tokens).
  app.use(async (ctx, next) => {
    if (!['GET', 'HEAD', 'OPTIONS'].includes(ctx.method)) {
      const origin = ctx.get('origin');
      const site = ctx.get('sec-fetch-site');
      // Under `Referrer-Policy: no-referrer` browsers send `Origin: null` even for our own forms;
      // Sec-Fetch-Site (which pages cannot forge) then says whether it really is same-origin.
      const sameOriginNull = origin === 'null' && site === 'same-origin';
      if ((origin && origin !== deps.adminUrl && !sameOriginNull) || (site && site !== 'same-origin' && site !== 'none')) {
        ctx.status = 403;
        ctx.type = 'text/plain';
        ctx.body = 'cross-origin requests are not accepted';
        return;
      }
    }
    await next();
  });

  app.use(async (ctx, next) => {
    if (ctx.path === '/favicon.ico') {
      // Browsers ask on their own; answering before the sign-in redirect keeps that request from
      // replacing the sign-in form's CSRF cookie.
      ctx.status = 204;
      return;
    }
    await next();
  });
  app.use(serveStylesheet(deps.views));
  // Prometheus scrapes this without signing in, so it comes before the session and the sign-in
  // redirect. That is safe because the admin listener is meant to be reachable only from the
  // operator's network (GATEHOUSE_ADMIN_HOST), and the metrics carry no secret and no identifier:
  // route templates, counts and timings. The public listener does not serve it (404).
  app.use(deps.metrics.endpoint('/metrics'));

  const csrfMatches = (expected: string, given: string | null) => {
    if (!given || !expected) return false;
    const a = Buffer.from(expected);
    const b = Buffer.from(given);
    return a.length === b.length && timingSafeEqual(a, b);
  };

  // Sign-in and sign-out.
  const auth = new Router<AdminState>();
  // Before there is a session, the sign-in form is protected by a double-submit token.
  const preSessionCookie = secure ? '__Host-gh_admin_csrf' : 'gh_admin_csrf';
  const signInPage = (ctx: Context, status: number, error?: string, email = '') => {
    // Reuse the browser's token, so a second tab (or a stray request) does not invalidate the first form.
    const existing = ctx.cookies.get(preSessionCookie);
    const csrf = existing && /^[A-Za-z0-9_-]{32}$/.test(existing) ? existing : randomBytes(24).toString('base64url');
    ctx.cookies.set(preSessionCookie, csrf, cookieOptions);
    ctx.status = status;
    ctx.type = 'html';
    ctx.body = deps.views.render('admin/sign-in.njk', { title: 'Admin sign-in', error, email, csrf });
  };
  auth.get('/sign-in', (ctx) => signInPage(ctx, 200));
  auth.post('/sign-in', async (ctx) => {
    const form = await readForm(ctx);
    if (!csrfMatches(ctx.cookies.get(preSessionCookie) ?? '', form.get('csrf'))) {
      return signInPage(ctx, 403, 'The form has expired. Sign in again.');
    }
    const email = (form.get('email') ?? '').trim().toLowerCase();
    const password = form.get('password') ?? '';
    const refuse = () => signInPage(ctx, 401, 'That email and password do not match an administrator.', email);
    if (!email || !password) {
      await deps.audit.record({ event: 'admin.sign_in_failed', details: { email } });
      return refuse();
    }
    // Reserve, then verify (docs/security.md I-36): a refused reservation never runs argon2.
    const deviceCookie = (secure ? '__Host-' : '') + deps.deviceCookies.nameFor(email);
    const device = deps.deviceCookies.verify(email, ctx.cookies.get(deviceCookie));
    const reserved = await throttle.reserve({ scope: 'admin', email, address: ctx.ip, device });
    if (!reserved.allowed) {
      ctx.set('Retry-After', String(reserved.retryAfter));
      return signInPage(ctx, 429, `Too many failed sign-ins. Try again in ${reserved.retryAfter} seconds.`, email);
    }
    const account = await deps.accounts.authenticate(email, password);
    if (!account || account.role !== 'admin') {
      await deps.audit.record({ event: 'admin.sign_in_failed', details: { email } });
      return refuse();
    }
    await throttle.succeeded(reserved.reservation);
    const issued = deps.deviceCookies.issue(email, device);
    ctx.cookies.set(deviceCookie, issued.value, { httpOnly: true, sameSite: 'lax', secure, path: '/', maxAge: issued.maxAgeMs, overwrite: true });
    const { token } = await sessions.create(account.id);
    ctx.cookies.set(cookieName, token, cookieOptions);
    await deps.audit.record({ event: 'admin.sign_in_succeeded', actor: `admin:${account.email}`, accountId: account.id });
    ctx.status = 303;
    ctx.redirect('/pending');
  });

  app.use(async (ctx, next) => {
    const session = await sessions.find(ctx.cookies.get(cookieName));
    if (session) ctx.state.session = session;
    await next();
  });
  app.use(auth.routes());

  // The JSON API authenticates on its own terms (session + X-CSRF-Token, or a personal API token).
  const api = createApiRouter({ ...deps, sessionCsrf: (ctx: Context) => (ctx.state as AdminState).session?.csrf });
  app.use(api.routes());
  app.use(api.allowedMethods());

  // Everything below needs an admin.
  app.use(async (ctx, next: Next) => {
    if (!ctx.state.session) {
      if (ctx.method === 'GET') {
        ctx.status = 303;
        ctx.redirect('/sign-in');
      } else {
        ctx.status = 401;
        ctx.type = 'text/plain';
        ctx.body = 'sign in first';
      }
      return;
    }
    await next();
  });

  const page: ConsolePage = {
    async render(ctx, view, context, status = 200) {
      const pending = await deps.clients.list({ status: 'pending' });
      ctx.status = status;
      ctx.type = 'html';
      ctx.body = deps.views.render(view, { ...context, admin: ctx.state.session, csrf: ctx.state.session!.csrf, pendingCount: pending.length, path: ctx.path });
    },
    async form(ctx) {
      const form = await readForm(ctx);
      if (!csrfMatches(ctx.state.session!.csrf, form.get('csrf'))) {
        ctx.status = 403;
        ctx.type = 'html';
        ctx.body = deps.views.render('error.njk', { title: 'The form has expired', message: 'Reload the page and try again.' });
        return undefined;
      }
      return form;
    },
  };

  const signOut = new Router<AdminState>();
  signOut.post('/sign-out', async (ctx) => {
    const form = await page.form(ctx);
    if (!form) return;
    await sessions.destroy(ctx.cookies.get(cookieName));
    ctx.cookies.set(cookieName, '', { ...cookieOptions, maxAge: 0 });
    await deps.audit.record({ event: 'admin.signed_out', actor: `admin:${ctx.state.session!.email}`, accountId: ctx.state.session!.accountId });
    ctx.status = 303;
    ctx.redirect('/sign-in');
  });
  app.use(signOut.routes());

  const consoleRouter = createConsoleRouter({ ...deps, page });
  const operations = createAdminOperations({ ...deps, connections: createConnectionsRepository(deps.db) });
  app.use(consoleRouter.routes());
  app.use(consoleRouter.allowedMethods());
  for (const router of [createServersRouter({ ...deps, page }), createUsersRouter({ ...deps, page, operations }), createConnectionsRouter({ ...deps, page })]) {
    app.use(router.routes());
    app.use(router.allowedMethods());
  }
  return app;
}
