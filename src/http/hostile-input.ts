/**
 * One guard for characters no parameter may carry (issue 15 §7), and for the size of the bodies
 * read ahead of oidc-provider (issue 15 §8).
 *
 * Refused characters: U+0000, which PostgreSQL refuses in `text` and `jsonb` (a 500 if it gets that
 * far), and unpaired UTF-16 surrogates (U+D800–U+DFFF alone), which have no UTF-8 encoding and which
 * `jsonb` refuses as `\ud800` escapes. No OAuth parameter, client metadata value, email address or
 * filter has a use for either, so a request that carries one anywhere — a query parameter, a form
 * field, a JSON string (keys included), a path segment — is refused as a bad request (RFC 6749 §4.1.2.1
 * and §5.2 `invalid_request`; RFC 7591 §3.2.2 `invalid_client_metadata`) before it reaches
 * oidc-provider or the database.
 *
 * What this does not check: anything else about a value (length, syntax, meaning). Those stay with
 * the code that reads the value. Header values are not checked (Node's parser already refuses NUL
 * in headers); the token endpoint checks the client id it finds in an Authorization header itself.
 */
import { parse as parseQuery } from 'node:querystring';
import type { Context, Middleware, Next } from 'koa';
import { peekBodyWithin } from './peek-body.ts';

const HOSTILE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Whether `value` holds U+0000 or an unpaired surrogate. */
export function isHostileString(value: string): boolean {
  return HOSTILE.test(value);
}

/**
 * The name of the first parameter of `value` (a parsed query, form or JSON document) holding a
 * refused character in a string or an object key, at any depth; undefined when there is none. A
 * refused character in a top-level name is reported as "a parameter name".
 */
export function findHostileParameter(value: unknown): string | undefined {
  if (value instanceof URLSearchParams) {
    for (const [k, v] of value) if (isHostileString(k) || isHostileString(v)) return isHostileString(k) ? 'a parameter name' : k;
    return undefined;
  }
  if (typeof value === 'string') return isHostileString(value) ? 'the body' : undefined;
  if (typeof value !== 'object' || value === null) return undefined;
  for (const [k, v] of Object.entries(value)) {
    if (isHostileString(k)) return 'a parameter name';
    if (containsHostile(v)) return k;
  }
  return undefined;
}

/** Iterative, so that a deeply nested document cannot exhaust the stack. */
function containsHostile(root: unknown): boolean {
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const value = stack.pop();
    if (typeof value === 'string') {
      if (isHostileString(value)) return true;
    } else if (Array.isArray(value)) {
      stack.push(...value);
    } else if (typeof value === 'object' && value !== null) {
      for (const [k, v] of Object.entries(value)) {
        if (isHostileString(k)) return true;
        stack.push(v);
      }
    }
  }
  return false;
}

export function describeHostileParameter(parameter: string): string {
  const name = parameter === 'a parameter name' || parameter === 'the body' || parameter === 'the path' ? parameter : `the ${parameter} parameter`;
  return `${name} contains a character Gatehouse does not accept (U+0000 or an unpaired UTF-16 surrogate)`;
}

export interface InputRefusal {
  /** 400: a refused character; 413: a body larger than its limit. */
  status: 400 | 413;
  description: string;
}

export interface HostileInputOptions {
  /**
   * For a request whose body is read ahead of the next middleware, its size limit in bytes; undefined
   * when the body is left to its reader (our own pages' readers check it themselves).
   */
  bodyLimit(ctx: Context): number | undefined;
  /** Answers a refused request. */
  refuse(ctx: Context, refusal: InputRefusal): void;
}

/** The decoded path, for what routers hand on as parameters (`/clients/:id`). */
function decodedPath(ctx: Context): string {
  try {
    return decodeURIComponent(ctx.path);
  } catch {
    // Malformed percent-encoding decodes to nothing our routers would match.
    return '';
  }
}

/**
 * The guard: refuses a request whose path, query or (read-ahead) body carries a refused character,
 * or whose read-ahead body is larger than its limit — counted on the bytes actually received, so a
 * chunked body without Content-Length is held to the same limit. A body that passes is put back on
 * the stream for its real reader (http/peek-body.ts).
 */
export function refuseHostileInput(options: HostileInputOptions): Middleware {
  return async function refuseHostileInput(ctx: Context, next: Next): Promise<void> {
    if (isHostileString(decodedPath(ctx))) return options.refuse(ctx, { status: 400, description: describeHostileParameter('the path') });
    if (ctx.querystring) {
      const parameter = findHostileParameter(ctx.query);
      if (parameter) return options.refuse(ctx, { status: 400, description: describeHostileParameter(parameter) });
    }
    const limit = ctx.method === 'GET' || ctx.method === 'HEAD' ? undefined : options.bodyLimit(ctx);
    const kind = ctx.is('application/x-www-form-urlencoded', 'application/json');
    if (limit !== undefined && kind) {
      const peeked = await peekBodyWithin(ctx.req, limit);
      // The client went away mid-body: there is nobody to answer.
      if (ctx.req.destroyed && !ctx.req.complete) return;
      if (peeked === 'too-large') return options.refuse(ctx, { status: 413, description: `the body is larger than ${limit} bytes` });
      if (peeked) {
        const parameter = findHostileParameter(parseBody(peeked, kind, ctx.request.charset));
        if (parameter) return options.refuse(ctx, { status: 400, description: describeHostileParameter(parameter) });
      }
    }
    await next();
  };
}

/** As oidc-provider parses it (lib/shared/selective_body.js); undefined when it is not parseable (its parser refuses it). */
function parseBody(body: Buffer, kind: string, charset: string): unknown {
  try {
    if (kind === 'application/x-www-form-urlencoded') return parseQuery(body.toString());
    return JSON.parse(charset ? new TextDecoder(charset).decode(body) : body.toString('utf8'));
  } catch {
    return undefined;
  }
}
