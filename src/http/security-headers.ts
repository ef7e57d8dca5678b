/**
 * Response headers every page and API answer carries. Pages get a strict Content-Security-Policy
 * (no script at all), and nothing may frame them (clickjacking on the consent page: MCP security
 * best practices, "Confused Deputy").
 */
import type { Context, Next } from 'koa';

export const PAGE_CSP = "default-src 'none'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'";

export async function securityHeaders(ctx: Context, next: Next): Promise<void> {
  ctx.set('X-Content-Type-Options', 'nosniff');
  ctx.set('Referrer-Policy', 'no-referrer');
  ctx.set('X-Frame-Options', 'DENY');
  ctx.set('Content-Security-Policy', PAGE_CSP);
  await next();
  if (ctx.response.is('html')) ctx.set('Cache-Control', 'no-store');
}
