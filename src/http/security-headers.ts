/**
 * Response headers every page and API answer carries. Pages get a strict Content-Security-Policy
 * (no script at all), and nothing may frame them (clickjacking on the consent page: MCP security
 * best practices, "Confused Deputy").
 */
import type { Context, Middleware, Next } from 'koa';

export const PAGE_CSP = "default-src 'none'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'";

/**
 * HSTS for an https origin (RFC 6797; OAuth 2.1 §1.5 requires TLS for every endpoint but loopback
 * redirects). One year, without `includeSubDomains` or `preload`: those speak for the whole parent
 * domain, which is the operator's call, not Gatehouse's. Browsers ignore it over plain http (§8.1).
 */
export const HSTS = 'max-age=31536000';

export function securityHeaders(options: { https: boolean }): Middleware {
  return async function securityHeaders(ctx: Context, next: Next): Promise<void> {
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.set('Referrer-Policy', 'no-referrer');
    ctx.set('X-Frame-Options', 'DENY');
    ctx.set('Content-Security-Policy', PAGE_CSP);
    if (options.https) ctx.set('Strict-Transport-Security', HSTS);
    await next();
    if (ctx.response.is('html')) ctx.set('Cache-Control', 'no-store');
  };
}
