/**
 * A `fetch` that trusts one extra CA (the committed test CA), for talking to a Gatehouse that
 * serves TLS natively with test/fixtures/tls. Node's global fetch cannot take a CA per call.
 */
import { request } from 'node:https';
import { readFileSync } from 'node:fs';

const TLS_DIR = new URL('../fixtures/tls/', import.meta.url);
export const TLS_FIXTURES = {
  ca: readFileSync(new URL('ca.pem', TLS_DIR), 'utf8'),
  certFile: new URL('server.pem', TLS_DIR).pathname,
  keyFile: new URL('server-key.pem', TLS_DIR).pathname,
  /** A second, self-signed pair, as if the certificate had been renewed. */
  renewedCertFile: new URL('renewed.pem', TLS_DIR).pathname,
  renewedKeyFile: new URL('renewed-key.pem', TLS_DIR).pathname,
};

export function fetchTrusting(ca: string | string[]): typeof fetch {
  return (async (input: string | URL | Request, init: RequestInit = {}) => {
    const url = new URL(input instanceof Request ? input.url : input);
    const headers = new Headers(init.headers);
    let body: Buffer | undefined;
    if (init.body !== undefined && init.body !== null) {
      body = Buffer.from(await new Response(init.body).arrayBuffer());
      if (!headers.has('content-type') && init.body instanceof URLSearchParams) {
        headers.set('content-type', 'application/x-www-form-urlencoded;charset=UTF-8');
      }
    }
    return await new Promise<Response>((resolve, reject) => {
      const req = request(
        url,
        { method: init.method ?? 'GET', headers: Object.fromEntries(headers), ca, agent: false },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => {
            const out = new Headers();
            for (const [name, value] of Object.entries(res.headers)) {
              for (const v of [value ?? []].flat()) out.append(name, String(v));
            }
            const status = res.statusCode ?? 0;
            const nullBody = status === 204 || status === 304;
            resolve(new Response(nullBody ? null : Buffer.concat(chunks), { status, headers: out }));
          });
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }) as typeof fetch;
}
