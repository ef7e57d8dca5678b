/**
 * Reads a JSON object body with a size limit, for the admin API. oidc-provider parses its own
 * endpoints' bodies.
 */
import type { Context } from 'koa';
import { FormBodyError } from './form-body.ts';

export async function readJson(ctx: Context, limit = 64 * 1024): Promise<Record<string, unknown>> {
  if (!ctx.is('application/json')) throw new FormBodyError(415, 'expected application/json');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new FormBodyError(413, 'the body is too large');
    chunks.push(chunk as Buffer);
  }
  let value: unknown;
  try {
    value = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
  } catch {
    throw new FormBodyError(400, 'the body is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new FormBodyError(400, 'the body must be a JSON object');
  return value as Record<string, unknown>;
}
