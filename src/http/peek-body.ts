/**
 * Reads a request body without consuming it: the bytes are put back on the stream (`unshift`,
 * Node's documented way for a parser to "un-consume" data), so the next reader — oidc-provider —
 * reads the request as if nobody had looked. Only for bodies with a Content-Length, up to `max`
 * bytes; anything else is left alone (undefined) for the real parser to accept or refuse.
 */
import type { IncomingMessage } from 'node:http';

export async function peekBody(req: IncomingMessage, max: number): Promise<Buffer | undefined> {
  const length = Number(req.headers['content-length']);
  if (!Number.isSafeInteger(length) || length <= 0 || length > max || req.readableEncoding || !req.readable) return undefined;
  return await new Promise<Buffer | undefined>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    const cleanup = () => {
      req.off('readable', onReadable);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    const onReadable = () => {
      let chunk: Buffer | null;
      while (received < length && (chunk = req.read() as Buffer | null) !== null) {
        chunks.push(chunk);
        received += chunk.length;
      }
      if (received >= length) {
        cleanup();
        const body = Buffer.concat(chunks, received);
        req.unshift(body);
        resolve(body.subarray(0, length));
      }
    };
    // Fewer bytes than announced: the request is broken, and the parser that comes next refuses it.
    const onEnd = () => {
      cleanup();
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
