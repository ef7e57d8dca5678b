/**
 * Reads a JSON object body with a size limit counted on the bytes actually received (a chunked
 * body without Content-Length included), for the admin API. oidc-provider parses its own
 * endpoints' bodies. A string or key with U+0000 or an unpaired surrogate is refused
 * (HostileInputError, a 400 `invalid_request`).
 */
import type { Context } from 'koa';
import { FormBodyError, HostileInputError, readBodyWithin } from './form-body.ts';
import { findHostileParameter } from './hostile-input.ts';

export async function readJson(ctx: Context, limit = 64 * 1024): Promise<Record<string, unknown>> {
  if (!ctx.is('application/json')) throw new FormBodyError(415, 'expected application/json');
  const raw = await readBodyWithin(ctx, limit, 'the body is too large');
  let value: unknown;
  try {
    value = JSON.parse(raw.toString('utf8') || '{}');
  } catch {
    throw new FormBodyError(400, 'the body is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new FormBodyError(400, 'the body must be a JSON object');
  const hostile = findHostileParameter(value);
  if (hostile) throw new HostileInputError(hostile);
  return value as Record<string, unknown>;
}
