/**
 * Reads a request body without consuming it: the bytes are put back on the stream (`unshift`,
 * Node's documented way for a parser to "un-consume" data), so the next reader — oidc-provider —
 * reads the request as if nobody had looked.
 *
 * The limit is counted on the bytes actually received, with or without a Content-Length (a chunked
 * body is read until it is complete or larger than the limit; issue 15 §8). What this does not do:
 * decide what the body means, or refuse it — callers do.
 */
import type { IncomingMessage } from 'node:http';

/**
 * The whole body (at most `max` bytes, put back on the stream); `'too-large'` when the request
 * announces or sends more than `max` bytes (what was read is put back too, so a caller may still
 * hand the request on to a parser that refuses it); undefined when there is no body to read (none,
 * an empty one, an encoded stream, one already read) or it ended short of its Content-Length.
 */
export async function peekBodyWithin(req: IncomingMessage, max: number): Promise<Buffer | 'too-large' | undefined> {
  const header = req.headers['content-length'];
  const length = header === undefined ? undefined : Number(header);
  if (length !== undefined && (!Number.isSafeInteger(length) || length <= 0)) return undefined;
  if (length !== undefined && length > max) return 'too-large';
  if (length === undefined && req.headers['transfer-encoding'] === undefined) return undefined;
  if (req.readableEncoding || !req.readable) return undefined;
  // A chunked body that is already complete and empty: reading it would end the stream.
  if (length === undefined && req.complete && req.readableLength === 0) return undefined;
  return await new Promise<Buffer | 'too-large' | undefined>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    const cleanup = () => {
      req.off('readable', onReadable);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    const giveBack = () => {
      const body = Buffer.concat(chunks, received);
      if (received > 0) req.unshift(body);
      return body;
    };
    // Without a Content-Length: the parser has seen the last chunk (`complete`) and nothing is left
    // in the buffer. Checked before each read, since reading past the end would end the stream.
    const allReceived = () => length === undefined && req.complete && req.readableLength === 0;
    const onReadable = () => {
      let chunk: Buffer | null;
      while ((length === undefined || received < length) && !allReceived() && (chunk = req.read() as Buffer | null) !== null) {
        chunks.push(chunk);
        received += chunk.length;
        if (received > max) {
          cleanup();
          giveBack();
          return resolve('too-large');
        }
      }
      // All of it: put back before 'end' is emitted (Node checks for one last unshift before it
      // emits 'end').
      if ((length !== undefined && received >= length) || allReceived()) {
        cleanup();
        const body = giveBack();
        resolve(received === 0 ? undefined : length === undefined ? body : body.subarray(0, length));
      }
    };
    const onEnd = () => {
      cleanup();
      // An empty chunked body ended while we listened: the next reader finds the stream ended and
      // reads `req.body` instead (oidc-provider's fallback), which is this empty body.
      if (length === undefined && received === 0 && req.complete) (req as IncomingMessage & { body?: Buffer }).body = Buffer.alloc(0);
      // Otherwise fewer bytes than announced: the request is broken, and the parser that comes next refuses it.
      resolve(undefined);
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    req.on('readable', onReadable);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}

/**
 * The body, put back on the stream, when it is at most `max` bytes; undefined otherwise (too large,
 * none, or broken): left for the real parser to accept or refuse.
 */
export async function peekBody(req: IncomingMessage, max: number): Promise<Buffer | undefined> {
  const body = await peekBodyWithin(req, max);
  return body === 'too-large' ? undefined : body;
}
