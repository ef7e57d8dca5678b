/**
 * RFC 8707 resource indicators, the MCP way: every token is for exactly one registered MCP server.
 *
 * - `resource` values are canonicalised before oidc-provider compares them (it compares raw
 *   strings), so `https://MCP.example.com/` and `https://mcp.example.com` are the same resource
 *   at /authorize, /token and on refresh, and a value sent twice counts once.
 * - An unknown resource is `invalid_target` (RFC 8707 §2).
 * - /authorize without `resource` binds the only registered resource, or fails with
 *   `invalid_target` when there are several: never an audience-less token.
 * - At /authorize, requested scopes are intersected with what the resource offers, and a request
 *   without (usable) scopes gets the resource's default scopes (MCP clients omit `scope` when the
 *   protected-resource metadata lists none; oidc-provider would answer `access_denied`).
 * - An approved client's ceiling (issue 3 §4) caps all of it: the resource must be in the ceiling,
 *   and the scopes the resource server "offers" to this client are only the ceiling's. Because
 *   oidc-provider intersects every access token's scopes with that list (code exchange and
 *   refresh alike), lowering a ceiling takes effect at the next refresh.
 */
import { errors, type Provider } from 'oidc-provider';
import type { ClientPolicyLookup } from '../clients/client-policy.ts';
import { canonicalizeResourceUri } from '../resources/canonical-uri.ts';
import type { Resource } from '../resources/resources.repository.ts';
import type { ResourcesService } from '../resources/resources.service.ts';

type ParamsLike = Record<string, unknown> & { resource?: string | string[] | undefined; scope?: string | undefined };
type OidcContextLike = { route?: string; params?: ParamsLike };

function canonicalizeParams(params: ParamsLike, route: string | undefined): void {
  if (params.resource === undefined) return;
  const values = Array.isArray(params.resource) ? params.resource : [params.resource];
  const unique = [
    ...new Set(
      values.map((v) => {
        if (typeof v !== 'string') return v;
        const c = canonicalizeResourceUri(v);
        return c.ok ? c.uri : v;
      }),
    ),
  ];
  // Two different resources at /authorize are refused in getResourceServerInfo: an error thrown
  // here, while oidc-provider assembles parameters, would escape its error handling (a 500).
  void route;
  params.resource = unique.length === 1 ? unique[0] : unique;
}

/**
 * Canonicalises `resource` wherever oidc-provider assembles request parameters. oidc-provider has
 * no hook between parsing a request and comparing its `resource` values, so this intercepts the
 * assignment of `ctx.oidc.params` on this provider's own context class (not a global patch).
 * Covered by test/integration/resource-indicators.test.ts.
 */
export function installResourceCanonicalization(provider: Provider): void {
  const proto = (provider as unknown as { OIDCContext: { prototype: object } }).OIDCContext.prototype;
  const values = new WeakMap<object, ParamsLike | undefined>();
  Object.defineProperty(proto, 'params', {
    configurable: true,
    get(this: OidcContextLike) {
      return values.get(this);
    },
    set(this: OidcContextLike, value: ParamsLike | undefined) {
      if (value) canonicalizeParams(value, this.route);
      values.set(this, value);
    },
  });
}

/** The scopes an authorization request will ask for at `resource`. */
export function resolveRequestedScopes(requested: string | undefined, resource: Resource): string[] {
  const offered = new Set(resource.scopes.map((s) => s.name));
  const kept = [...new Set((requested ?? '').split(' ').filter((s) => offered.has(s)))];
  return kept.length ? kept : resource.defaultScopes;
}

/** The scopes of `resource` a client with `ceiling` may receive; undefined when the resource is outside the ceiling. */
export function scopesWithinCeiling(resource: Resource, ceiling: Record<string, string[]> | null): string[] | undefined {
  const offered = resource.scopes.map((s) => s.name);
  if (ceiling === null) return offered;
  const allowed = ceiling[resource.uri];
  if (!allowed) return undefined;
  return offered.filter((name) => allowed.includes(name));
}

type ClientLike = { clientId: string } | undefined;

/** errors.InvalidGrant keeps its fixed description ("grant request is invalid"); say what is wrong. */
const invalidGrant = (description: string) => Object.assign(new errors.InvalidGrant(), { error_description: description });

export function createResourceIndicatorsFeature(deps: { resources: ResourcesService; clientPolicy: ClientPolicyLookup }) {
  return {
    enabled: true,
    async defaultResource(_ctx: unknown, _client: unknown, oneOf?: string | string[]) {
      if (oneOf) return oneOf;
      const sole = await deps.resources.findSole();
      if (sole) return sole.uri;
      const count = (await deps.resources.list()).length;
      throw new errors.InvalidTarget(
        count === 0
          ? 'no MCP server is registered at this authorization server yet'
          : 'the resource parameter is required: this server issues tokens for several MCP servers',
      );
    },
    async useGrantedResource() {
      return true;
    },
    async getResourceServerInfo(ctx: { oidc: OidcContextLike }, indicator: string, client: ClientLike) {
      if ((ctx.oidc.route === 'authorization' || ctx.oidc.route === 'resume') && Array.isArray(ctx.oidc.params?.resource) && ctx.oidc.params.resource.length > 1) {
        throw new errors.InvalidTarget('request one resource (MCP server) per authorization');
      }
      const resource = await deps.resources.resolve(indicator);
      if (!resource) throw new errors.InvalidTarget('the resource is not an MCP server registered at this authorization server');
      const policy = client ? await deps.clientPolicy(client.clientId) : { status: 'pending' as const, ceiling: {} };
      // 'resume' is the authorization request continuing after sign-in, consent or approval.
      const atAuthorization = ctx.oidc.route === 'authorization' || ctx.oidc.route === 'resume';
      let offered = resource.scopes.map((s) => s.name);
      if (policy.status === 'approved') {
        const allowed = scopesWithinCeiling(resource, policy.ceiling);
        if (!allowed?.length) {
          const message = `this client is not approved for ${resource.name} (${resource.uri})`;
          throw atAuthorization ? new errors.InvalidTarget(message) : invalidGrant(message);
        }
        offered = allowed;
      } else if (!atAuthorization) {
        // Suspended and rejected clients' grants are revoked; this closes any gap (and a pending client has no grant).
        throw invalidGrant(`this client is ${policy.status}: it gets no tokens until an administrator approves it`);
      }
      if (atAuthorization && ctx.oidc.params) {
        const wanted = resolveRequestedScopes(ctx.oidc.params.scope, resource).filter((s) => offered.includes(s));
        const fallback = resource.defaultScopes.filter((s) => offered.includes(s));
        ctx.oidc.params.scope = (wanted.length ? wanted : fallback.length ? fallback : offered).join(' ');
      }
      return {
        scope: offered.join(' '),
        audience: resource.uri,
        accessTokenFormat: 'jwt' as const,
        accessTokenTTL: resource.accessTokenTtl,
        jwt: { sign: { alg: 'ES256' as const } },
      };
    },
  };
}
