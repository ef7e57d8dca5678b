/**
 * CORS for the registration endpoint, so browser-based MCP clients (e.g. MCP Inspector) can
 * register. oidc-provider answers 404 to the preflight (its issue #471). No credentials are
 * involved, so any origin may call it.
 */
import type { Context, Next } from 'koa';

export function registrationCors(path: string) {
  return async (ctx: Context, next: Next) => {
    if (ctx.path !== path) return next();
    ctx.set('Access-Control-Allow-Origin', '*');
    if (ctx.method === 'OPTIONS') {
      ctx.set('Access-Control-Allow-Methods', 'POST, OPTIONS');
      ctx.set('Access-Control-Allow-Headers', ctx.get('Access-Control-Request-Headers') || 'Content-Type, Authorization');
      ctx.set('Access-Control-Max-Age', '600');
      ctx.status = 204;
      return;
    }
    ctx.set('Access-Control-Expose-Headers', 'Location, Retry-After');
    await next();
  };
}
