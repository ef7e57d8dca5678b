/**
 * Fetching a document from a URL a stranger chose, without becoming their proxy into our network
 * (MCP authorization, "Client ID Metadata Document Security"; CIMD draft §6.5–6.6; RFC 9700 §4.x
 * on SSRF): https only, the name resolved once and every address checked against the special-use
 * ranges (private, loopback, link-local, CGNAT, multicast, documentation, …), the connection pinned
 * to the checked address (no DNS rebinding between check and connect), no redirects, a small body
 * limit and a hard deadline.
 *
 * `trust` exists for tests only: it lets a local https server with a test CA stand in for the
 * internet. It is never read from configuration (see app/deps.ts), so production cannot enable it.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import { request } from 'node:https';
import { BlockList, isIP, type LookupFunction } from 'node:net';

export interface FetchTrust {
  /** Extra CA certificates (PEM) accepted for TLS. */
  ca?: string;
  /** Allow loopback addresses (127.0.0.0/8, ::1): a local test server. */
  allowLoopback?: boolean;
}

export interface SafeFetchOptions {
  timeoutMs: number;
  maxBytes: number;
  trust?: FetchTrust;
}

export interface FetchedDocument {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** Why a fetch was refused or failed, in words an administrator can act on. */
export class FetchRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FetchRefusedError';
  }
}

const SPECIAL_USE = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8], // "this network"
  ['10.0.0.0', 8], // private (RFC 1918)
  ['100.64.0.0', 10], // shared address space, CGNAT (RFC 6598)
  ['127.0.0.0', 8], // loopback
  ['169.254.0.0', 16], // link-local, including cloud metadata 169.254.169.254
  ['172.16.0.0', 12], // private
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.0.2.0', 24], // documentation
  ['192.88.99.0', 24], // 6to4 relay anycast
  ['192.168.0.0', 16], // private
  ['198.18.0.0', 15], // benchmarking
  ['198.51.100.0', 24], // documentation
  ['203.0.113.0', 24], // documentation
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, broadcast
] as const) {
  SPECIAL_USE.addSubnet(net, prefix, 'ipv4');
}
for (const [net, prefix] of [
  ['::', 96], // unspecified, loopback, and IPv4-compatible addresses (deprecated, RFC 4291 §2.5.5.1)
  ['::ffff:0:0:0', 96], // IPv4-translated addresses (RFC 2765 §2.1; issue 15 §9)
  ['64:ff9b::', 96], // NAT64
  ['64:ff9b:1::', 48], // local-use NAT64
  ['100::', 64], // discard
  ['2001::', 23], // IETF protocol assignments, Teredo
  ['2001:db8::', 32], // documentation
  ['2002::', 16], // 6to4
  ['fc00::', 7], // unique local
  ['fe80::', 10], // link-local
  ['fec0::', 10], // site-local (deprecated)
  ['ff00::', 8], // multicast
] as const) {
  SPECIAL_USE.addSubnet(net, prefix, 'ipv6');
}
// IPv4-mapped IPv6 (::ffff:0:0/96) is not listed: BlockList would match every IPv4 address against
// it. isSpecialUseAddress checks the embedded IPv4 address instead.
const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/** The IPv4 address inside an IPv4-mapped IPv6 address (::ffff:a.b.c.d or ::ffff:xxxx:xxxx). */
function embeddedIpv4(address: string): string | undefined {
  const lower = address.toLowerCase();
  const dotted = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
  if (dotted) return dotted[1];
  const hex = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(lower);
  if (!hex) return undefined;
  const hi = parseInt(hex[1]!, 16);
  const lo = parseInt(hex[2]!, 16);
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}

/** True for addresses no document fetch may reach (see the ranges above). */
export function isSpecialUseAddress(address: string, trust?: FetchTrust): boolean {
  const family = isIP(address);
  if (family === 0) return true;
  const mapped = family === 6 ? embeddedIpv4(address) : undefined;
  if (mapped) return isSpecialUseAddress(mapped, trust);
  const type = family === 4 ? 'ipv4' : 'ipv6';
  if (trust?.allowLoopback && LOOPBACK.check(address, type)) return false;
  return SPECIAL_USE.check(address, type);
}

/** Resolves the URL's host and returns the first address, refusing if *any* address is special-use. */
async function resolvePinned(url: URL, trust?: FetchTrust): Promise<{ address: string; family: number }> {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (isIP(host)) {
    if (isSpecialUseAddress(host, trust)) throw new FetchRefusedError(`${host} is a private, loopback or otherwise special-use address`);
    return { address: host, family: isIP(host) };
  }
  let addresses: Array<{ address: string; family: number }>;
  try {
    addresses = await dnsLookup(host, { all: true, verbatim: true });
  } catch {
    throw new FetchRefusedError(`${host} could not be resolved`);
  }
  if (addresses.length === 0) throw new FetchRefusedError(`${host} could not be resolved`);
  const bad = addresses.find((a) => isSpecialUseAddress(a.address, trust));
  if (bad) throw new FetchRefusedError(`${host} resolves to ${bad.address}, a private, loopback or otherwise special-use address`);
  return addresses[0]!;
}

/**
 * GETs `url` under the rules above. Resolves with the response (any status: the caller decides),
 * or rejects with FetchRefusedError.
 */
export async function safeFetch(url: string, options: SafeFetchOptions): Promise<FetchedDocument> {
  const parsed = URL.parse(url);
  if (!parsed || parsed.protocol !== 'https:') throw new FetchRefusedError('only https URLs are fetched');
  const deadline = AbortSignal.timeout(options.timeoutMs);
  const pinned = await resolvePinned(parsed, options.trust);
  const lookup: LookupFunction = (_hostname, opts, callback) => {
    if (opts.all) callback(null, [{ address: pinned.address, family: pinned.family }]);
    else callback(null, pinned.address, pinned.family);
  };

  return new Promise<FetchedDocument>((resolve, reject) => {
    const fail = (message: string) => reject(new FetchRefusedError(message));
    const req = request(
      parsed,
      {
        method: 'GET',
        headers: { accept: 'application/json', 'user-agent': 'Gatehouse (client metadata document fetcher)' },
        lookup,
        ca: options.trust?.ca ? [options.trust.ca] : undefined,
        signal: deadline,
        agent: false,
      },
      (res) => {
        const status = res.statusCode ?? 0;
        if (status >= 300 && status < 400) {
          res.destroy();
          fail(`the server answered with a redirect (${status}); redirects are not followed`);
          return;
        }
        const declared = Number(res.headers['content-length']);
        if (Number.isFinite(declared) && declared > options.maxBytes) {
          res.destroy();
          fail(`the document is larger than ${options.maxBytes} bytes`);
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > options.maxBytes) {
            res.destroy();
            fail(`the document is larger than ${options.maxBytes} bytes`);
            return;
          }
          chunks.push(chunk);
        });
        res.on('end', () => resolve({ status, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', () =>
          fail(deadline.aborted ? `the server did not answer within ${options.timeoutMs} ms` : 'the connection failed while reading the document'),
        );
      },
    );
    req.on('error', (error: NodeJS.ErrnoException) => {
      if (deadline.aborted || error.name === 'AbortError') fail(`the server did not answer within ${options.timeoutMs} ms`);
      else fail(`the document could not be fetched (${error.code ?? error.message})`);
    });
    req.end();
  });
}
