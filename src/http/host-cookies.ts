/**
 * `__Host-` cookies on the public listener under an https issuer.
 *
 * A `__Host-` cookie must be Secure, have Path=/ and no Domain (RFC 6265bis §4.1.3.2), so no sibling
 * subdomain or plain-http peer can plant one (cookie tossing, session fixation). oidc-provider sets
 * its session cookie at `/`, but scopes its interaction and resume cookies to one flow's path
 * (`/interaction/<uid>`, `/authorize/<uid>`), so that two sign-ins in two tabs never collide. Renaming
 * alone would lose that, so this layer carries the path in the name instead:
 *
 *   out: `gh_resume=UID; path=/authorize/UID`  →  `__Host-gh_resume~L2F1dGhvcml6ZS9VSUQ=UID; path=/; secure`
 *   in:  a request to /authorize/UID gets `gh_resume=UID` back, exactly what the browser would have
 *        sent for the original cookie (RFC 6265 §5.1.4 path-match, longest path first).
 *
 * Signed cookies keep verifying: their `.sig` companion is renamed the same way, and oidc-provider
 * sees the original names it signed. Everything happens at the Node request/response level, so it
 * also covers the contexts oidc-provider creates for itself (`interactionDetails`, sessions).
 */
import type { Context, Next } from 'koa';

const PREFIX = '__Host-';
const PATH_MARK = '~';

function encodePath(path: string): string {
  return Buffer.from(path, 'utf8').toString('base64url');
}

function decodePath(token: string): string | undefined {
  if (!/^[A-Za-z0-9_-]+$/.test(token)) return undefined;
  const path = Buffer.from(token, 'base64url').toString('utf8');
  return path.startsWith('/') ? path : undefined;
}

/** RFC 6265 §5.1.4: does a cookie with this path go with a request for that path? */
function pathMatches(cookiePath: string, requestPath: string): boolean {
  if (cookiePath === requestPath) return true;
  if (!requestPath.startsWith(cookiePath)) return false;
  return cookiePath.endsWith('/') || requestPath[cookiePath.length] === '/';
}

/** Rewrites one Set-Cookie value: `__Host-` name (carrying a non-root path), Path=/, Secure, no Domain. */
export function toHostCookie(setCookie: string): string {
  const [pair = '', ...rawAttributes] = setCookie.split(';');
  const eq = pair.indexOf('=');
  if (eq <= 0) return setCookie;
  const name = pair.slice(0, eq).trim();
  const value = pair.slice(eq + 1);
  if (name.startsWith(PREFIX)) return setCookie;
  let path = '/';
  const attributes: string[] = [];
  for (const raw of rawAttributes) {
    const attribute = raw.trim();
    const key = attribute.split('=')[0]!.toLowerCase();
    if (key === 'path') path = attribute.slice(attribute.indexOf('=') + 1) || '/';
    else if (key === 'domain' || key === 'secure' || !attribute) continue;
    else attributes.push(attribute);
  }
  const hostName = path === '/' ? `${PREFIX}${name}` : `${PREFIX}${name}${PATH_MARK}${encodePath(path)}`;
  return [`${hostName}=${value}`, 'path=/', ...attributes, 'secure'].join('; ');
}

/**
 * Rewrites a Cookie request header for a request path: every `__Host-` cookie this layer made goes
 * back under its original name when its original path matches; other cookies pass unchanged.
 */
export function fromHostCookies(cookieHeader: string, requestPath: string): string {
  const restored: { name: string; value: string; pathLength: number }[] = [];
  for (const part of cookieHeader.split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const name = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (!name.startsWith(PREFIX)) {
      // A cookie without the prefix is not one of ours: it may have been planted by a sibling
      // subdomain or over plain http. Dropped, so it can never stand in for a real one.
      continue;
    }
    const bare = name.slice(PREFIX.length);
    const mark = bare.lastIndexOf(PATH_MARK);
    if (mark < 0) {
      restored.push({ name: bare, value, pathLength: 1 });
      continue;
    }
    const path = decodePath(bare.slice(mark + 1));
    if (path === undefined) continue;
    if (pathMatches(path, requestPath)) restored.push({ name: bare.slice(0, mark), value, pathLength: path.length });
  }
  // Browsers list longer paths first (RFC 6265 §5.4); cookie readers take the first of a name.
  restored.sort((a, b) => b.pathLength - a.pathLength);
  return restored.map((c) => `${c.name}=${c.value}`).join('; ');
}

/**
 * Koa middleware, first on the public listener under an https issuer: rewrites the request's cookies
 * and every Set-Cookie written to the response from here on, by anyone (oidc-provider included).
 */
export async function hostCookies(ctx: Context, next: Next): Promise<void> {
  const { req, res } = ctx;
  if (req.headers.cookie !== undefined) req.headers.cookie = fromHostCookies(req.headers.cookie, ctx.path);
  const setHeader = res.setHeader.bind(res);
  res.setHeader = (name: string, value: number | string | readonly string[]) =>
    setHeader(name, name.toLowerCase() === 'set-cookie' ? rewriteAll(value) : value);
  const appendHeader = res.appendHeader.bind(res);
  res.appendHeader = (name: string, value: string | readonly string[]) =>
    appendHeader(name, name.toLowerCase() === 'set-cookie' ? rewriteAll(value) : value);
  await next();
}

function rewriteAll(value: number | string | readonly string[]): string[] {
  return (Array.isArray(value) ? (value as string[]) : [String(value)]).map(toHostCookie);
}
