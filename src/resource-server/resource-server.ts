/**
 * One object per protected MCP server: the issuer, the resource, and by default everything else
 * (scopes, their hierarchy, the display name) read from Gatehouse's own registry entry for the
 * resource, so the MCP server's configuration cannot drift from the authorization server's.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { AuthorizationServer, type AuthorizationServerOptions, type RegistryEntry } from './authorization-server.ts';
import { challenge, type Challenge } from './challenge.ts';
import { TokenError } from './errors.ts';
import {
  protectedResourceMetadata,
  protectedResourceMetadataHandler,
  protectedResourceMetadataUrl,
  type ProtectedResourceMetadata,
} from './metadata.ts';
import type { ScopeIncludes } from './scopes.ts';
import { verifyAccessToken, type VerifiedToken, type VerifyOptions } from './verify.ts';

export interface ResourceServerOptions extends AuthorizationServerOptions {
  /** This MCP server's resource URI, as registered at Gatehouse (`gatehouse resource add`). */
  resource: string;
  /**
   * Where scopes and their hierarchy come from: `registry` (default) reads Gatehouse's entry for the
   * resource; `static` uses {@link scopes} and {@link scopeIncludes} (any RFC 8414 authorization server).
   */
  source?: 'registry' | 'static';
  scopes?: readonly string[];
  scopeIncludes?: ScopeIncludes;
  resourceName?: string;
  clockToleranceSeconds?: number;
  algorithms?: readonly string[];
  /**
   * The origin clients use to reach this server, for DPoP `htu` checks behind a proxy. Default: the
   * resource URI's origin.
   */
  publicOrigin?: string;
}

export interface Requirement {
  /** Scopes this operation needs (every one; the hierarchy applies). */
  scopes?: readonly string[];
}

/** What the MCP SDK's transports expect in `req.auth` (its `AuthInfo`). */
export interface McpAuthInfo {
  token: string;
  clientId: string;
  scopes: string[];
  /** Seconds since the epoch. */
  expiresAt: number;
  resource: URL;
  extra: { subject: string; claims: Record<string, unknown> };
}

export function toMcpAuthInfo(verified: VerifiedToken, resource: string): McpAuthInfo {
  return {
    token: verified.token,
    clientId: verified.clientId,
    scopes: verified.scopes,
    expiresAt: Math.floor(verified.expiresAt.getTime() / 1000),
    resource: new URL(resource),
    extra: { subject: verified.subject, claims: verified.claims },
  };
}

export class ResourceServer {
  readonly authorizationServer: AuthorizationServer;
  /** Where this resource's RFC 9728 metadata is served (the `resource_metadata` of challenges). */
  readonly metadataUrl: string;
  readonly #options: ResourceServerOptions;

  constructor(options: ResourceServerOptions) {
    this.#options = options;
    this.authorizationServer = new AuthorizationServer(options);
    this.metadataUrl = protectedResourceMetadataUrl(options.resource);
  }

  get resource(): string {
    return this.#options.resource;
  }

  /** Gatehouse's registry entry (source `registry`), cached; a clear error when Gatehouse does not know the resource. */
  async registryEntry(): Promise<RegistryEntry | undefined> {
    if (this.#options.source === 'static') return undefined;
    const entry = await this.authorizationServer.registryEntry(this.#options.resource);
    if (!entry) {
      throw new TokenError('unavailable', `${this.#options.resource} is not registered at ${this.authorizationServer.issuer}: run \`gatehouse resource add ${this.#options.resource}\``);
    }
    return entry;
  }

  /** The RFC 9728 document this server publishes. */
  async metadata(): Promise<ProtectedResourceMetadata> {
    const entry = await this.registryEntry();
    return protectedResourceMetadata({
      resource: entry?.resource ?? this.#options.resource,
      issuer: this.authorizationServer.issuer,
      scopes: entry?.scopes_supported ?? this.#options.scopes,
      resourceName: this.#options.resourceName ?? entry?.resource_name,
    });
  }

  /** Verifies the Authorization header for an operation; rejects with a TokenError. */
  async verify(authorization: string | string[] | undefined, requirement: Requirement = {}, dpop?: VerifyOptions['dpop']): Promise<VerifiedToken> {
    const entry = await this.registryEntry();
    return verifyAccessToken(authorization, {
      issuer: this.authorizationServer.issuer,
      authorizationServer: this.authorizationServer,
      resource: entry?.resource ?? this.#options.resource,
      requiredScopes: requirement.scopes,
      scopeIncludes: entry?.scope_includes ?? this.#options.scopeIncludes,
      clockToleranceSeconds: this.#options.clockToleranceSeconds,
      algorithms: this.#options.algorithms,
      dpop,
    });
  }

  /** The answer for a refused request. */
  challenge(error: TokenError, requirement: Requirement = {}): Challenge {
    return challenge(error, { resourceMetadataUrl: this.metadataUrl, scopes: requirement.scopes });
  }

  /**
   * For Node's http: verifies the request; on success returns the token (and sets `req.auth` for
   * the MCP SDK), otherwise writes the challenge and returns undefined.
   */
  async authenticate(req: IncomingMessage, res: ServerResponse, requirement: Requirement = {}): Promise<VerifiedToken | undefined> {
    try {
      const origin = this.#options.publicOrigin ?? new URL(this.#options.resource).origin;
      const verified = await this.verify(req.headers.authorization, requirement, {
        proof: req.headers.dpop,
        method: req.method ?? 'GET',
        url: new URL(req.url ?? '/', origin).href,
      });
      (req as IncomingMessage & { auth?: McpAuthInfo }).auth = toMcpAuthInfo(verified, verified.audience.includes(this.resource) ? this.resource : verified.audience[0]!);
      return verified;
    } catch (err) {
      if (!(err instanceof TokenError)) throw err;
      const answer = this.challenge(err, requirement);
      res.writeHead(answer.status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store', ...answer.headers });
      res.end(JSON.stringify(answer.body));
      return undefined;
    }
  }

  /** A Node handler for the metadata paths; resolves true when it answered. */
  readonly serveMetadata = (req: IncomingMessage, res: ServerResponse): Promise<boolean> =>
    protectedResourceMetadataHandler(this.#options.resource, () => this.metadata())(req, res);
}

/** Protect an MCP server: `createResourceServer({ issuer, resource })`. */
export function createResourceServer(options: ResourceServerOptions): ResourceServer {
  return new ResourceServer(options);
}
