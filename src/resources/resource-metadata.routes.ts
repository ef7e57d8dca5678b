/**
 * Each registered MCP server's protected-resource metadata (RFC 9728 §2), served by Gatehouse on
 * the public listener at `GET /resources/{id}/protected-resource-metadata`, so that an MCP server
 * using the resource-server kit can republish it at its own
 * `/.well-known/oauth-protected-resource` (RFC 9728 §3) instead of repeating its scopes in config.
 *
 * `{id}` is the resource's id (`resources.id`, a uuid) or its URI, percent-encoded as one path
 * segment, in any spelling that canonicalises to the registered URI (RFC 8707 §2).
 *
 * Besides RFC 9728's own fields (`resource`, `authorization_servers`, `scopes_supported`,
 * `bearer_methods_supported`, `resource_name`), the document carries Gatehouse's registry data as
 * extension fields (RFC 9728 §2 allows additional parameters): `scope_descriptions`,
 * `scope_includes` (the scope hierarchy as declared, not its transitive closure), `default_scopes`
 * and `access_token_ttl`. The resource-server kit parses this exact shape: do not rename fields.
 *
 * Public and cacheable: it needs no provider, session or cookie, and says nothing that the
 * consent page and the authorization server's `scopes_supported` do not already show.
 * What it does not do: it is not the MCP server's own RFC 9728 document (that one lives at the MCP
 * server's origin, and only there does RFC 9728 §3.3's `resource` check apply).
 */
import Router from '@koa/router';
import type { Context, Next } from 'koa';
import type { Resource } from './resources.repository.ts';
import { scopeIncludes, type ResourcesService } from './resources.service.ts';

export const RESOURCE_METADATA_ROUTE = '/resources/:id/protected-resource-metadata';

/** The path of a resource's metadata document (its id, or its URI percent-encoded). */
export const resourceMetadataPath = (idOrUri: string) => `/resources/${encodeURIComponent(idOrUri)}/protected-resource-metadata`;

const ALLOW = 'GET, HEAD, OPTIONS';

/** RFC 9728 §2 metadata, plus Gatehouse's registry fields (see the module comment). */
export interface ResourceMetadataDocument {
  resource: string;
  authorization_servers: string[];
  scopes_supported: string[];
  bearer_methods_supported: ['header'];
  resource_name: string;
  scope_descriptions: Record<string, string>;
  scope_includes: Record<string, string[]>;
  default_scopes: string[];
  access_token_ttl: number;
}

export interface ResourceMetadataDeps {
  resources: ResourcesService;
  /** The authorization server's issuer identifier (RFC 8414 §2), the one entry of `authorization_servers`. */
  issuer: string;
}

/** The document for one registered resource. */
export function resourceMetadataDocument(resource: Resource, issuer: string): ResourceMetadataDocument {
  return {
    resource: resource.uri,
    authorization_servers: [issuer],
    scopes_supported: resource.scopes.map((s) => s.name),
    // MCP authorization: bearer tokens go in the Authorization header only (OAuth 2.1 §5.2, no query or body).
    bearer_methods_supported: ['header'],
    resource_name: resource.name,
    scope_descriptions: Object.fromEntries(resource.scopes.map((s) => [s.name, s.description])),
    scope_includes: scopeIncludes(resource.scopes),
    default_scopes: resource.defaultScopes,
    access_token_ttl: resource.accessTokenTtl,
  };
}

/** Any origin may read it: it is public, and no credentials are involved. */
async function allowAnyOrigin(ctx: Context, next: Next) {
  ctx.set('Access-Control-Allow-Origin', '*');
  await next();
}

/**
 * A browser's CORS preflight (a client sending `MCP-Protocol-Version` triggers one): allow GET
 * with whatever headers it asks for.
 */
async function answerPreflight(ctx: Context, next: Next) {
  if (ctx.method !== 'OPTIONS') return next();
  ctx.set('Allow', ALLOW);
  ctx.set('Access-Control-Allow-Methods', 'GET, HEAD');
  ctx.set('Access-Control-Allow-Headers', ctx.get('Access-Control-Request-Headers') || 'MCP-Protocol-Version');
  ctx.set('Access-Control-Max-Age', '600');
  ctx.status = 204;
}

/** Read-only: anything but GET, HEAD and OPTIONS is a 405 naming what is allowed (RFC 9110 §15.5.6). */
async function refuseOtherMethods(ctx: Context, next: Next) {
  if (ctx.method === 'GET' || ctx.method === 'HEAD') return next();
  ctx.set('Allow', ALLOW);
  ctx.set('Cache-Control', 'no-store');
  ctx.status = 405;
  ctx.body = { error: 'invalid_request', error_description: `${ctx.method} is not allowed here: the metadata document is read with GET` };
}

export function createResourceMetadataRouter(deps: ResourceMetadataDeps): Router {
  const router = new Router();

  async function serveMetadata(ctx: Context) {
    const id = ctx.params.id!;
    const resource = await deps.resources.find(id);
    if (!resource) {
      // RFC 8707 §2's error for a resource the authorization server does not know.
      ctx.status = 404;
      ctx.set('Cache-Control', 'no-store');
      ctx.body = { error: 'invalid_target', error_description: `no MCP server ${id} is registered with Gatehouse` };
      return;
    }
    ctx.set('Cache-Control', 'public, max-age=60');
    ctx.body = resourceMetadataDocument(resource, deps.issuer);
  }

  router.all(RESOURCE_METADATA_ROUTE, allowAnyOrigin, answerPreflight, refuseOtherMethods, serveMetadata);
  return router;
}
