/**
 * What a resource server needs to know about its authorization server, fetched and cached:
 * - the RFC 8414 metadata at `<issuer>/.well-known/oauth-authorization-server`, whose `issuer` must
 *   equal the configured issuer exactly (RFC 8414 §3.3) and whose `jwks_uri` names the keys;
 * - the JWKS, kept for `jwksMaxAgeSeconds` and fetched again at once when a token names a key id it
 *   does not hold (a key rotation), at most once per `jwksRefetchMinIntervalSeconds`, so a flood of
 *   tokens with made-up key ids cannot turn the resource server against the authorization server;
 * - Gatehouse's registry entry for the resource (`<issuer>/resources/<resource>/protected-resource-metadata`):
 *   its scopes, their hierarchy and descriptions, so the resource server and the authorization
 *   server can never disagree about them.
 *
 * One cache per (issuer, fetch) pair, shared by every caller in the process.
 */
import { createLocalJWKSet, type JSONWebKeySet, type JWTHeaderParameters, type FlattenedJWSInput, type CryptoKey } from 'jose';
import { TokenError } from './errors.ts';
import type { ScopeIncludes } from './scopes.ts';

export interface AuthorizationServerOptions {
  /** The authorization server's issuer identifier, e.g. `https://auth.example.com`. */
  issuer: string;
  /** How long a fetched JWKS is used before it is fetched again. Default 300 s. */
  jwksMaxAgeSeconds?: number;
  /** Unknown key ids fetch the JWKS again at most this often. Default 10 s. */
  jwksRefetchMinIntervalSeconds?: number;
  /** How long the registry entry is used before it is fetched again. Default 60 s. */
  registryMaxAgeSeconds?: number;
  /** Per-request deadline for every fetch. Default 5 s. */
  timeoutMs?: number;
  /** The fetch to use (tests, proxies). Default the global fetch. */
  fetch?: typeof fetch;
}

/** Gatehouse's registry entry for one resource (an RFC 9728 document with extensions). */
export interface RegistryEntry {
  resource: string;
  authorization_servers: string[];
  scopes_supported: string[];
  bearer_methods_supported?: string[];
  resource_name?: string;
  scope_descriptions?: Record<string, string>;
  scope_includes?: ScopeIncludes;
  default_scopes?: string[];
  access_token_ttl?: number;
}

interface Cached<T> {
  value: T;
  fetchedAt: number;
}

type KeyResolver = (header: JWTHeaderParameters, token: FlattenedJWSInput) => Promise<CryptoKey>;

export class AuthorizationServer {
  readonly issuer: string;
  readonly #options: Required<Omit<AuthorizationServerOptions, 'issuer' | 'fetch'>>;
  readonly #fetch: typeof fetch;
  #metadata: Promise<{ jwks_uri: string; [k: string]: unknown }> | undefined;
  #jwks: Cached<{ set: ReturnType<typeof createLocalJWKSet>; kids: Set<string> }> | undefined;
  #jwksInFlight: Promise<void> | undefined;
  readonly #registry = new Map<string, Cached<RegistryEntry>>();
  /** JWKS fetches made, for observability and tests. */
  jwksFetches = 0;

  constructor(options: AuthorizationServerOptions) {
    this.issuer = options.issuer.replace(/\/$/, '');
    this.#fetch = options.fetch ?? fetch;
    this.#options = {
      jwksMaxAgeSeconds: options.jwksMaxAgeSeconds ?? 300,
      jwksRefetchMinIntervalSeconds: options.jwksRefetchMinIntervalSeconds ?? 10,
      registryMaxAgeSeconds: options.registryMaxAgeSeconds ?? 60,
      timeoutMs: options.timeoutMs ?? 5000,
    };
  }

  async #getJson(url: string, what: string): Promise<unknown> {
    let response: Response;
    try {
      response = await this.#fetch(url, { headers: { accept: 'application/json' }, redirect: 'error', signal: AbortSignal.timeout(this.#options.timeoutMs) });
    } catch (err) {
      throw new TokenError('unavailable', `the authorization server's ${what} could not be fetched: ${(err as Error).message}`);
    }
    if (response.status === 404 && what === 'registry entry') return undefined;
    if (!response.ok) throw new TokenError('unavailable', `the authorization server's ${what} answered ${response.status}`);
    try {
      return await response.json();
    } catch {
      throw new TokenError('unavailable', `the authorization server's ${what} is not JSON`);
    }
  }

  /** RFC 8414 metadata; its `issuer` must be exactly the configured one (RFC 8414 §3.3). */
  metadata(): Promise<{ jwks_uri: string; [k: string]: unknown }> {
    this.#metadata ??= (async () => {
      const doc = (await this.#getJson(`${this.issuer}/.well-known/oauth-authorization-server`, 'metadata')) as Record<string, unknown> | undefined;
      if (!doc || doc.issuer !== this.issuer) {
        throw new TokenError('unavailable', `the authorization server's metadata names issuer ${JSON.stringify(doc?.issuer)}, not ${this.issuer}`);
      }
      if (typeof doc.jwks_uri !== 'string') throw new TokenError('unavailable', 'the authorization server publishes no jwks_uri');
      return doc as { jwks_uri: string };
    })().catch((err: unknown) => {
      this.#metadata = undefined; // retry on the next request
      throw err;
    });
    return this.#metadata;
  }

  async #loadJwks(): Promise<void> {
    this.#jwksInFlight ??= (async () => {
      try {
        const { jwks_uri } = await this.metadata();
        const set = (await this.#getJson(jwks_uri, 'JWKS')) as JSONWebKeySet | undefined;
        if (!set || !Array.isArray(set.keys)) throw new TokenError('unavailable', 'the authorization server\'s JWKS has no keys');
        this.jwksFetches++;
        this.#jwks = {
          value: { set: createLocalJWKSet(set), kids: new Set(set.keys.map((k) => k.kid).filter((k): k is string => typeof k === 'string')) },
          fetchedAt: Date.now(),
        };
      } finally {
        this.#jwksInFlight = undefined;
      }
    })();
    return this.#jwksInFlight;
  }

  /**
   * The key for a token's header: from the cached JWKS, refreshed when old, and fetched again at
   * once (rate-limited) when the key id is unknown.
   */
  readonly key: KeyResolver = async (header, token) => {
    const age = this.#jwks ? (Date.now() - this.#jwks.fetchedAt) / 1000 : Infinity;
    if (age >= this.#options.jwksMaxAgeSeconds) await this.#loadJwks();
    const known = header.kid === undefined || this.#jwks!.value.kids.has(header.kid);
    if (!known && (Date.now() - this.#jwks!.fetchedAt) / 1000 >= this.#options.jwksRefetchMinIntervalSeconds) {
      await this.#loadJwks();
    }
    return this.#jwks!.value.set(header, token);
  };

  /** Gatehouse's registry entry for `resource`; undefined when Gatehouse does not know it. */
  async registryEntry(resource: string): Promise<RegistryEntry | undefined> {
    const cached = this.#registry.get(resource);
    if (cached && (Date.now() - cached.fetchedAt) / 1000 < this.#options.registryMaxAgeSeconds) return cached.value;
    try {
      const doc = (await this.#getJson(`${this.issuer}/resources/${encodeURIComponent(resource)}/protected-resource-metadata`, 'registry entry')) as RegistryEntry | undefined;
      if (!doc) return undefined;
      this.#registry.set(resource, { value: doc, fetchedAt: Date.now() });
      return doc;
    } catch (err) {
      // Serve the last known entry while the authorization server is briefly away.
      if (cached) return cached.value;
      throw err;
    }
  }
}

const servers = new Map<string, WeakMap<typeof fetch, AuthorizationServer>>();

/** The shared {@link AuthorizationServer} for these options (one cache per issuer and fetch). */
export function authorizationServer(options: AuthorizationServerOptions): AuthorizationServer {
  const issuer = options.issuer.replace(/\/$/, '');
  const f = options.fetch ?? fetch;
  let byFetch = servers.get(issuer);
  if (!byFetch) servers.set(issuer, (byFetch = new WeakMap()));
  let server = byFetch.get(f);
  if (!server) byFetch.set(f, (server = new AuthorizationServer(options)));
  return server;
}
