/**
 * The login and consent pages (no JavaScript needed). oidc-provider sends the browser here with an
 * interaction cookie; these routes sign the user in, show what the client asks for, and hand the
 * result back to the provider.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import Router from '@koa/router';
import type { Context } from 'koa';
import type { Logger } from 'pino';
import type { AccountsService } from '../accounts/accounts.service.ts';
import type { DeviceCookies } from '../accounts/device-cookies.ts';
import type { SignInThrottle } from '../accounts/sign-in-throttle.ts';
import type { AuditLog } from '../audit/audit-log.ts';
import { FormBodyError, HostileInputError, readForm } from '../http/form-body.ts';
import type { Views } from '../http/views.ts';
import { InteractionNotFoundError, type InteractionsFacade, type InteractionView } from '../oidc/interactions.facade.ts';
import type { ResourcesService } from '../resources/resources.service.ts';
import { describeRedirectDestination } from '../clients/redirect-uris.ts';
import { APPROVAL_PROMPT } from '../oidc/profile.ts';

export interface InteractionRoutesDeps {
  interactions: InteractionsFacade;
  accounts: AccountsService;
  resources: ResourcesService;
  audit: AuditLog;
  views: Views;
  logger: Logger;
  /** Secret for CSRF tokens (the current cookie key). */
  csrfSecret: string;
  /** Lockout with backoff after failed sign-ins, reserved before the password is checked. */
  throttle: SignInThrottle;
  /** Signed per-account device cookies: a known device keeps its own sign-in budget. */
  deviceCookies: DeviceCookies;
}

export function createInteractionRouter(deps: InteractionRoutesDeps): Router {
  const router = new Router();

  const csrfFor = (uid: string) => createHmac('sha256', deps.csrfSecret).update(`csrf:${uid}`).digest('base64url');
  const csrfValid = (uid: string, token: string | null) => {
    if (!token) return false;
    const expected = Buffer.from(csrfFor(uid));
    const given = Buffer.from(token);
    return expected.length === given.length && timingSafeEqual(expected, given);
  };

  function page(ctx: Context, status: number, view: string, context: Record<string, unknown>) {
    ctx.status = status;
    ctx.type = 'html';
    ctx.body = deps.views.render(view, context);
  }

  function errorPage(ctx: Context, status: number, title: string, message: string) {
    page(ctx, status, 'error.njk', { title, message });
  }

  function loginPage(ctx: Context, view: InteractionView, status = 200, error?: string, email = '') {
    page(ctx, status, 'login.njk', {
      title: 'Sign in',
      uid: view.uid,
      clientName: view.clientName ?? view.clientId,
      csrf: csrfFor(view.uid),
      error,
      email,
    });
  }

  async function consentPage(ctx: Context, view: InteractionView) {
    const resources = [];
    for (const [uri, scopes] of Object.entries(view.missingResourceScopes)) {
      const resource = await deps.resources.resolve(uri);
      const described = new Map(resource?.scopes.map((s) => [s.name, s.description]));
      resources.push({
        name: resource?.name ?? uri,
        uri,
        scopes: scopes.map((name) => ({ name, description: described.get(name) ?? name })),
      });
    }
    const destination = describeRedirectDestination(view.redirectUri);
    const account = view.accountId ? await deps.accounts.findActiveById(view.accountId) : undefined;
    page(ctx, 200, 'consent.njk', {
      title: 'Allow access?',
      uid: view.uid,
      clientName: view.clientName ?? view.clientId,
      email: account?.email,
      redirectHost: destination.shown,
      localhostOnly: destination.local,
      resources,
      csrf: csrfFor(view.uid),
    });
  }

  /** The MCP server a request asked for, with its scopes in words. */
  async function describeRequested(uri: string | undefined, scopes: string[]) {
    if (!uri) return [];
    const resource = await deps.resources.resolve(uri);
    const described = new Map(resource?.scopes.map((s) => [s.name, s.description]));
    return [{ name: resource?.name ?? uri, uri, scopes: scopes.map((name) => ({ name, description: described.get(name) ?? name })) }];
  }

  async function approvalPage(ctx: Context, view: InteractionView) {
    const status = view.clientStatus ?? 'pending';
    page(ctx, status === 'pending' ? 200 : 403, 'approval.njk', {
      title: status === 'pending' ? 'Waiting for approval' : status === 'rejected' ? 'Not approved' : 'Suspended',
      uid: view.uid,
      status,
      clientName: view.clientName ?? view.clientId,
      clientHost: /^https:\/\//.test(view.clientId) ? URL.parse(view.clientId)?.host : undefined,
      redirectHost: describeRedirectDestination(view.redirectUri).shown,
      resources: await describeRequested(view.requested.resource, view.requested.scopes),
      csrf: csrfFor(view.uid),
    });
  }

  async function withInteraction(ctx: Context, handler: (view: InteractionView) => Promise<void>) {
    try {
      const view = await deps.interactions.load(ctx.req, ctx.res, ctx.params.uid ?? '');
      await handler(view);
    } catch (err) {
      if (err instanceof InteractionNotFoundError) {
        errorPage(ctx, 400, 'This sign-in request has expired', `${err.message}. Start again from your application.`);
        return;
      }
      if (err instanceof FormBodyError) {
        errorPage(ctx, err.status, 'Something was wrong with the form', err.message);
        return;
      }
      throw err;
    }
  }

  router.get('/interaction/:uid', (ctx) =>
    withInteraction(ctx, async (view) => {
      if (view.prompt === 'login') return loginPage(ctx, view);
      if (view.prompt === 'consent') return consentPage(ctx, view);
      if (view.prompt === APPROVAL_PROMPT) return approvalPage(ctx, view);
      errorPage(ctx, 400, 'Cannot continue', 'This request needs a step Gatehouse does not support.');
    }),
  );

  router.post('/interaction/:uid/login', (ctx) =>
    withInteraction(ctx, async (view) => {
      // A NUL or unpaired surrogate in the form (issue 15 §7): the form again, with the reason; nothing read from it is used.
      const form = await readForm(ctx).catch((err: unknown) => {
        if (err instanceof HostileInputError) return undefined;
        throw err;
      });
      if (!form) return loginPage(ctx, view, 400, 'Your email or password contains a character Gatehouse does not accept. Check it and try again.');
      if (!csrfValid(view.uid, form.get('csrf'))) {
        return errorPage(ctx, 403, 'The form has expired', 'Reload the page and sign in again.');
      }
      if (view.prompt !== 'login') return ctx.redirect(`/interaction/${view.uid}`);
      const email = (form.get('email') ?? '').trim();
      const password = form.get('password') ?? '';
      if (!email || !password) return loginPage(ctx, view, 400, 'Enter your email and password.', email);
      // Reserve, then verify (docs/security.md I-36): a refused reservation never runs argon2.
      const normalized = email.toLowerCase();
      const deviceCookie = deps.deviceCookies.nameFor(normalized);
      const device = deps.deviceCookies.verify(normalized, ctx.cookies.get(deviceCookie));
      const reserved = await deps.throttle.reserve({ scope: 'user', email: normalized, address: ctx.ip, device });
      if (!reserved.allowed) {
        ctx.set('Retry-After', String(reserved.retryAfter));
        return loginPage(ctx, view, 429, `Too many failed sign-ins. Try again in ${reserved.retryAfter} seconds.`, email);
      }
      const account = await deps.accounts.authenticate(email, password);
      if (!account) {
        await deps.audit.record({ event: 'user.sign_in_failed', clientId: view.clientId, details: { email } });
        return loginPage(ctx, view, 401, 'That email and password do not match an account.', email);
      }
      await deps.throttle.succeeded(reserved.reservation);
      // Under an https issuer the public listener makes this `__Host-…; Secure` (http/host-cookies.ts).
      const issued = deps.deviceCookies.issue(normalized, device);
      ctx.cookies.set(issued.name, issued.value, { httpOnly: true, sameSite: 'lax', path: '/', maxAge: issued.maxAgeMs, overwrite: true });
      await deps.audit.record({ event: 'user.sign_in_succeeded', actor: `user:${account.id}`, accountId: account.id, clientId: view.clientId });
      ctx.status = 303;
      ctx.redirect(await deps.interactions.finishLogin(ctx.req, ctx.res, account.id));
    }),
  );

  router.post('/interaction/:uid/consent', (ctx) =>
    withInteraction(ctx, async (view) => {
      const form = await readForm(ctx);
      if (!csrfValid(view.uid, form.get('csrf'))) {
        return errorPage(ctx, 403, 'The form has expired', 'Reload the page and decide again.');
      }
      if (view.prompt !== 'consent') return ctx.redirect(`/interaction/${view.uid}`);
      const decision = form.get('decision');
      let next: string;
      if (decision === 'allow') {
        next = await deps.interactions.finishConsent(ctx.req, ctx.res, view);
        await deps.audit.record({
          event: 'consent.granted',
          actor: `user:${view.accountId}`,
          accountId: view.accountId,
          clientId: view.clientId,
          resource: Object.keys(view.missingResourceScopes)[0],
          details: { scopes: view.missingResourceScopes },
        });
      } else if (decision === 'deny') {
        next = await deps.interactions.abort(ctx.req, ctx.res, 'access_denied', 'the user denied the request');
        await deps.audit.record({ event: 'consent.denied', actor: `user:${view.accountId}`, accountId: view.accountId, clientId: view.clientId });
      } else {
        return errorPage(ctx, 400, 'Something was wrong with the form', 'Choose Allow or Deny.');
      }
      ctx.status = 303;
      ctx.redirect(next);
    }),
  );

  router.post('/interaction/:uid/approval', (ctx) =>
    withInteraction(ctx, async (view) => {
      const form = await readForm(ctx);
      if (!csrfValid(view.uid, form.get('csrf'))) {
        return errorPage(ctx, 403, 'The form has expired', 'Go back to the application and start again.');
      }
      if (view.prompt !== APPROVAL_PROMPT) return ctx.redirect(`/interaction/${view.uid}`);
      const decision = form.get('decision');
      let next: string;
      if (decision === 'retry') {
        next = await deps.interactions.retry(ctx.req, ctx.res);
      } else if (decision === 'cancel') {
        next = await deps.interactions.abort(ctx.req, ctx.res, 'access_denied', `the client is ${view.clientStatus ?? 'not approved'}: an administrator of this authorization server must approve it`);
      } else {
        return errorPage(ctx, 400, 'Something was wrong with the form', 'Choose Try again, or close this window.');
      }
      ctx.status = 303;
      ctx.redirect(next);
    }),
  );

  return router;
}
