/**
 * Reads an application/x-www-form-urlencoded body, with a size limit counted on the bytes actually
 * received (a chunked body without Content-Length included). Used only by our own pages:
 * oidc-provider parses its own endpoints' bodies.
 *
 * A form with U+0000 or an unpaired surrogate in a name or value is refused (HostileInputError,
 * http/hostile-input.ts), so no such character reaches a service or the database.
 */
import type { Context } from 'koa';
import { describeHostileParameter, findHostileParameter } from './hostile-input.ts';

export class FormBodyError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** A body with a refused character (issue 15 §7): a 400 `invalid_request`; sign-in pages re-show their form. */
export class HostileInputError extends FormBodyError {
  constructor(readonly parameter: string) {
    super(400, describeHostileParameter(parameter));
  }
}

/** The body's bytes, refused (413) once more than `limit` have arrived, whatever Content-Length says. */
export async function readBodyWithin(ctx: Context, limit: number, tooLarge: string): Promise<Buffer> {
  const announced = Number(ctx.get('content-length'));
  if (Number.isSafeInteger(announced) && announced > limit) throw new FormBodyError(413, tooLarge);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new FormBodyError(413, tooLarge);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks, size);
}

export async function readForm(ctx: Context, limit = 16 * 1024): Promise<URLSearchParams> {
  if (!ctx.is('application/x-www-form-urlencoded')) throw new FormBodyError(415, 'expected a form submission');
  const form = new URLSearchParams((await readBodyWithin(ctx, limit, 'the form is too large')).toString('utf8'));
  const hostile = findHostileParameter(form);
  if (hostile) throw new HostileInputError(hostile);
  return form;
}
