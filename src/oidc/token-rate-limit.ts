/**
 * A rate limit on the token endpoint per client (issue 4 §3), across instances (counters in
 * PostgreSQL): a runaway or hostile client — a refresh loop, a code-guessing script, one leaked
 * client_id used from many places — is slowed down without touching other clients.
 *
 * The client is named by the request itself (RFC 6749 §2.3: HTTP Basic, `client_id` in the body, or
 * a `client_assertion`'s `sub`, RFC 7523 §3), read before oidc-provider parses anything and without
 * consuming the body. The limit counts every attempt, including refused ones; it runs outside the
 * request's transaction, so a refused request cannot roll its own count back.
 *
 * A request with U+0000 or an unpaired surrogate in any parameter or in its client id (issue 15
 * §7, http/hostile-input.ts) is refused here, as `invalid_request` (RFC 6749 §5.2), after it is
 * counted: by the plain limiter, since the read-ahead statement would carry the character to
 * PostgreSQL. The body is read whether or not it has a Content-Length (a chunked one too).
 */
import { createHash } from 'node:crypto';
import { decodeJwt } from 'jose';
import type { Context, Next } from 'koa';
import { findHostileParameter, isHostileString, describeHostileParameter } from '../http/hostile-input.ts';
import { peekBody } from '../http/peek-body.ts';
import type { RateLimiter } from '../http/rate-limit.ts';
import type { PrefetchRequest, TokenPrefetch } from './token-prefetch.ts';

/** oidc-provider refuses larger bodies itself (56 KiB). */
const MAX_PEEK = 56 * 1024;

export function clientIdOfTokenRequest(authorization: string | undefined, body: URLSearchParams | undefined): string | undefined {
  if (authorization && /^basic /i.test(authorization)) {
    const decoded = Buffer.from(authorization.slice(6).trim(), 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon > 0) {
      try {
        return decodeURIComponent(decoded.slice(0, colon).replace(/\+/g, ' '));
      } catch {
        return decoded.slice(0, colon);
      }
    }
  }
  const id = body?.get('client_id');
  if (id) return id;
  const assertion = body?.get('client_assertion');
  if (assertion) {
    try {
      const sub = decodeJwt(assertion).sub;
      if (typeof sub === 'string' && sub) return sub;
    } catch {
      // Malformed: oidc-provider refuses it.
    }
  }
  return undefined;
}

/** The credential a token request presents, by grant type. */
function presentedToken(body: URLSearchParams | undefined): PrefetchRequest['token'] {
  const grant = body?.get('grant_type');
  if (grant === 'refresh_token' && body?.get('refresh_token')) return { model: 'RefreshToken', value: body.get('refresh_token')! };
  if (grant === 'authorization_code' && body?.get('code')) return { model: 'AuthorizationCode', value: body.get('code')! };
  return undefined;
}

export function tokenRateLimit(deps: { limiter: RateLimiter; perMinute: number; path: string; prefetch?: TokenPrefetch | undefined }) {
  return async function tokenRateLimit(ctx: Context, next: Next): Promise<void> {
    if (ctx.method !== 'POST' || ctx.path !== deps.path) return next();
    let raw: Buffer | undefined;
    try {
      raw = ctx.is('application/x-www-form-urlencoded') ? await peekBody(ctx.req, MAX_PEEK) : undefined;
    } catch (err) {
      // The client went away mid-body: there is nobody to answer.
      if (ctx.req.destroyed && !ctx.req.complete) return;
      throw err;
    }
    if (ctx.req.destroyed && !ctx.req.complete) return;
    const body = raw ? new URLSearchParams(raw.toString('utf8')) : undefined;
    const clientId = clientIdOfTokenRequest(ctx.get('authorization') || undefined, body);
    const hostile = findHostileParameter(body) ?? (clientId !== undefined && isHostileString(clientId) ? 'client_id' : undefined);
    const refuseHostile = () => {
      ctx.status = 400;
      ctx.set('Cache-Control', 'no-store');
      ctx.body = { error: 'invalid_request', error_description: describeHostileParameter(hostile!) };
    };
    if (clientId === undefined) return hostile ? refuseHostile() : next();
    // A digest keeps the key short whatever a client sends as its id.
    const key = `token-client:${createHash('sha256').update(clientId).digest('base64url')}`;
    // With the request's reads folded into the same round trip when it redeems a code or refresh token.
    const token = presentedToken(body);
    const limit =
      deps.prefetch && token && !hostile
        ? await deps.prefetch({ clientId, token, rateLimit: { key, limit: deps.perMinute, windowSeconds: 60 } })
        : await deps.limiter.hit(key, deps.perMinute, 60);
    if (!limit.allowed) {
      ctx.status = 429;
      ctx.set('Retry-After', String(limit.retryAfter));
      ctx.set('Cache-Control', 'no-store');
      ctx.body = {
        error: 'invalid_request',
        error_description: `too many token requests for this client: try again in ${limit.retryAfter} seconds`,
      };
      return;
    }
    if (hostile) return refuseHostile();
    // A client that went away during the read-ahead: oidc-provider would find its stream
    // consumed and fall back to a pre-parsed body (with a console warning). Nobody to answer.
    if (ctx.req.destroyed && !ctx.req.complete) return;
    await next();
  };
}
