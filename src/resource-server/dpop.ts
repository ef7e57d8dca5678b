/**
 * DPoP proof checks at a resource server (RFC 9449 §4.3 and §7.1): the proof is a JWT of type
 * `dpop+jwt`, signed with an asymmetric algorithm by the public key in its own header; it is for
 * this request (`htm`, `htu`), fresh (`iat`), and for this access token (`ath`); and the key's
 * thumbprint (RFC 7638) is the one the token is bound to (`cnf.jkt`, RFC 9449 §6.1).
 *
 * Not checked: `jti` replay (that needs shared state: pass `seenJti` to keep it), and server
 * nonces (RFC 9449 §9).
 */
import { createHash } from 'node:crypto';
import { calculateJwkThumbprint, decodeProtectedHeader, importJWK, jwtVerify, type JWK } from 'jose';
import { TokenError } from './errors.ts';

export interface DpopRequest {
  /** The `DPoP` request header (exactly one proof). */
  proof: string | string[] | undefined;
  /** The request's method, e.g. `POST`. */
  method: string;
  /** The request's absolute URL as the client addressed it (query and fragment are ignored). */
  url: string;
  /** How far `iat` may be from now. Default 300 s. */
  maxAgeSeconds?: number;
  /** Return true when a proof's `jti` was seen before (a replay). Optional: needs shared state. */
  seenJti?: (jti: string) => boolean | Promise<boolean>;
}

const ASYMMETRIC = ['ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'];

/** RFC 9449 §4.3 item 9: htu is compared without query and fragment, after normalisation. */
function normalisedHtu(value: string): string | undefined {
  const url = URL.parse(value);
  if (!url) return undefined;
  url.search = '';
  url.hash = '';
  return url.href;
}

/** Checks the proof for `token`, bound to `jkt`; throws `dpop_mismatch` with the reason. */
export async function checkDpopProof(token: string, jkt: string, request: DpopRequest): Promise<void> {
  const fail = (why: string): never => {
    throw new TokenError('dpop_mismatch', `the DPoP proof ${why}`);
  };
  const proof = request.proof;
  if (proof === undefined || proof === '') throw new TokenError('dpop_required', 'the access token is bound to a key: send a DPoP proof with it');
  if (Array.isArray(proof) || proof.includes(',')) fail('must be exactly one DPoP header');
  const compact = proof as string;
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(compact);
  } catch {
    return fail('is not a JWT');
  }
  if (header.typ !== 'dpop+jwt') fail('must have typ dpop+jwt');
  if (typeof header.alg !== 'string' || !ASYMMETRIC.includes(header.alg)) fail('must be signed with an asymmetric algorithm');
  const jwk = header.jwk as JWK | undefined;
  if (!jwk || typeof jwk !== 'object' || 'd' in jwk) fail('must carry a public key (jwk) in its header');
  let payload: Record<string, unknown>;
  try {
    const key = await importJWK(jwk!, header.alg);
    ({ payload } = await jwtVerify(compact, key, { typ: 'dpop+jwt', algorithms: ASYMMETRIC }));
  } catch {
    return fail('signature does not verify with the key in its header');
  }
  if (typeof payload.jti !== 'string' || !payload.jti) fail('has no jti');
  if (payload.htm !== request.method.toUpperCase()) fail(`is for ${String(payload.htm)}, not ${request.method.toUpperCase()}`);
  if (typeof payload.htu !== 'string' || normalisedHtu(payload.htu) !== normalisedHtu(request.url)) fail('is for another URL');
  const maxAge = request.maxAgeSeconds ?? 300;
  if (typeof payload.iat !== 'number' || Math.abs(Date.now() / 1000 - payload.iat) > maxAge) fail('is too old or from the future');
  const ath = createHash('sha256').update(token).digest('base64url');
  if (payload.ath !== ath) fail('is not for this access token (ath)');
  if ((await calculateJwkThumbprint(jwk!, 'sha256')) !== jkt) fail('proves possession of another key than the token is bound to');
  if (request.seenJti && (await request.seenJti(payload.jti as string))) fail('was used before (jti replay)');
}
