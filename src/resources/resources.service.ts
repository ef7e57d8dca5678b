/**
 * The registry of MCP servers Gatehouse issues tokens for: canonical URI, display name, scopes
 * with descriptions, default scopes and access-token lifetime.
 */
import type { DB } from '../db/database.ts';
import type { ResourceScope } from '../db/schema.ts';
import { canonicalizeResourceUri } from './canonical-uri.ts';
import { createResourcesRepository, type Resource, type ResourceChanges } from './resources.repository.ts';

/** RFC 6749 §3.3 scope-token: %x21 / %x23-5B / %x5D-7E. */
const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]+$/;

/** Scopes with an OAuth/OIDC meaning of their own, never resource scopes. */
const RESERVED_SCOPES = new Set(['openid', 'offline_access']);

export class ResourceInputError extends Error {
  readonly code = 'invalid_resource';
}

export class ResourceNotFoundError extends Error {
  readonly code = 'resource_not_found';
}

export interface AddResourceInput {
  uri: string;
  name: string;
  scopes: ResourceScope[];
  /** Defaults to every scope. */
  defaultScopes?: string[] | undefined;
  accessTokenTtl: number;
}

export type UpdateResourceInput = Omit<AddResourceInput, 'uri'>;

/**
 * Checks each scope's `includes` (the scope hierarchy, see `ResourceScope.includes`): every name is
 * another scope of the same resource, listed at most once. `previous` (the scopes before an edit)
 * only sharpens the message when an included scope is being removed: the including scope must let
 * go of it in the same change (stricter than silently dropping it from others' includes).
 * Cycles (`a` includes `b`, `b` includes `a`) are allowed: they declare the scopes equivalent, and
 * a resource server that follows `includes` transitively must expect them. Not checked: whether a
 * broader scope is described as broader; that is the administrator's word.
 * Returns the scopes as stored: `{ name, description, includes? }`, included names trimmed,
 * `includes` omitted when empty.
 */
function checkIncludes(scopes: ResourceScope[], names: Set<string>, previous: ResourceScope[] | undefined, problems: string[]): ResourceScope[] {
  return scopes.map((s) => {
    const includes = (s.includes ?? []).map((n) => n.trim()).filter(Boolean);
    const seen = new Set<string>();
    for (const n of includes) {
      if (n === s.name) problems.push(`scope "${s.name}" includes itself`);
      else if (seen.has(n)) problems.push(`scope "${s.name}" includes "${n}" twice`);
      else if (!names.has(n)) {
        problems.push(
          previous?.some((p) => p.name === n)
            ? `scope "${n}" cannot be removed while scope "${s.name}" includes it: remove it from ${s.name}'s includes as well`
            : `scope "${s.name}" includes "${n}", which is not one of the resource's scopes`,
        );
      }
      seen.add(n);
    }
    return includes.length ? { name: s.name, description: s.description, includes } : { name: s.name, description: s.description };
  });
}

/**
 * Checks everything but the URI; appends what is wrong to `problems` and returns the values to
 * store. `previous` is the resource's scopes before an edit (for clearer messages only).
 */
function checkChanges(input: UpdateResourceInput, problems: string[], previous?: ResourceScope[]): ResourceChanges {
  if (!input.name.trim()) problems.push('name must not be empty');
  if (!input.scopes.length) problems.push('at least one scope is required');
  const names = new Set<string>();
  for (const s of input.scopes) {
    if (!SCOPE_TOKEN.test(s.name)) problems.push(`scope "${s.name}" has characters RFC 6749 §3.3 does not allow`);
    if (RESERVED_SCOPES.has(s.name)) problems.push(`scope "${s.name}" is reserved`);
    if (names.has(s.name)) problems.push(`scope "${s.name}" is listed twice`);
    if (!s.description.trim()) problems.push(`scope "${s.name}" needs a description users can read`);
    names.add(s.name);
  }
  const scopes = checkIncludes(input.scopes, names, previous, problems);
  const defaults = input.defaultScopes?.length ? input.defaultScopes : input.scopes.map((s) => s.name);
  for (const d of defaults) if (!names.has(d)) problems.push(`default scope "${d}" is not one of the resource's scopes`);
  if (!Number.isInteger(input.accessTokenTtl) || input.accessTokenTtl < 30 || input.accessTokenTtl > 86400) {
    problems.push('access-token lifetime must be between 30 and 86400 seconds');
  }
  return { name: input.name.trim(), scopes, defaultScopes: [...new Set(defaults)], accessTokenTtl: input.accessTokenTtl };
}

/**
 * Each scope that includes others → the scopes it includes, as declared (not the transitive
 * closure); `{}` when none does. The shape of `scope_includes` in the resource's metadata document
 * and in the `resource.updated` audit event.
 */
export function scopeIncludes(scopes: ResourceScope[]): Record<string, string[]> {
  return Object.fromEntries(scopes.filter((s) => s.includes?.length).map((s) => [s.name, [...s.includes!]]));
}

/**
 * What changed, as the `resource.updated` audit event records it (the console's page builds the
 * same shape): the new values, the scopes added and removed, and the previous values, each with
 * `scope_includes` (see `scopeIncludes`).
 */
export function resourceUpdateDetails(previous: Resource, updated: Resource): Record<string, unknown> {
  const before = previous.scopes.map((s) => s.name);
  const after = updated.scopes.map((s) => s.name);
  return {
    name: updated.name,
    scopes: after,
    added_scopes: after.filter((n) => !before.includes(n)),
    removed_scopes: before.filter((n) => !after.includes(n)),
    default_scopes: updated.defaultScopes,
    scope_includes: scopeIncludes(updated.scopes),
    access_token_ttl: updated.accessTokenTtl,
    previous: {
      name: previous.name,
      scopes: before,
      default_scopes: previous.defaultScopes,
      scope_includes: scopeIncludes(previous.scopes),
      access_token_ttl: previous.accessTokenTtl,
    },
  };
}

export function createResourcesService(deps: { db: DB }) {
  const repo = createResourcesRepository(deps.db);

  /** Finds a resource by any spelling of its URI that canonicalises to the registered one. */
  async function resolve(uri: string): Promise<Resource | undefined> {
    const canonical = canonicalizeResourceUri(uri);
    return canonical.ok ? repo.findByUri(canonical.uri) : undefined;
  }

  return {
    list: () => repo.list(),

    resolve,

    findSole: () => repo.findSole(),

    /** By the resource's id (as the console links to it); undefined for an unknown or malformed id. */
    get: (id: string) => repo.findById(id),

    /**
     * By its id (`resources.id`, a uuid) or by any spelling of its URI (as `resolve`): how the public
     * metadata route names a resource. Undefined when neither finds one.
     */
    async find(idOrUri: string): Promise<Resource | undefined> {
      return (await repo.findById(idOrUri)) ?? (await resolve(idOrUri));
    },

    async add(input: AddResourceInput): Promise<Resource> {
      const problems: string[] = [];
      const canonical = canonicalizeResourceUri(input.uri);
      if (!canonical.ok) problems.push(canonical.reason);
      else if (canonical.uri.startsWith('http:') && !/^http:\/\/(localhost|127\.0\.0\.1|\[::1\])(:\d+)?(\/|$)/.test(canonical.uri)) {
        problems.push('resource must be https (http only for localhost)');
      }
      const changes = checkChanges(input, problems);
      if (problems.length || !canonical.ok) throw new ResourceInputError(problems.join('; '));
      return repo.insert({ uri: canonical.uri, ...changes });
    },

    /**
     * Changes a registered resource's name, scopes, default scopes and access-token lifetime, with
     * the same rules as `add`. The URI never changes: it is the audience of every token issued.
     * Scopes removed here disappear from clients' ceilings and grants at their next refresh.
     */
    async update(uri: string, input: UpdateResourceInput): Promise<Resource> {
      const problems: string[] = [];
      const changes = checkChanges(input, problems);
      if (problems.length) throw new ResourceInputError(problems.join('; '));
      const canonical = canonicalizeResourceUri(uri);
      const updated = canonical.ok ? await repo.update(canonical.uri, changes) : undefined;
      if (!updated) throw new ResourceNotFoundError(`no resource ${uri} is registered`);
      return updated;
    },

    /**
     * `update` with only what `changes` names; everything omitted keeps its current value. When the
     * scopes are replaced and no default scopes are given, the current defaults that are still
     * offered stay defaults (none left: every scope, as when adding). `uri` may be any spelling
     * that canonicalises to the registered URI. Replaced scopes carry their own `includes`; a scope
     * that a kept scope still includes cannot be removed (the error names the including scope).
     * Returns the resource before and after the change.
     */
    async edit(uri: string, changes: Partial<UpdateResourceInput>): Promise<{ previous: Resource; updated: Resource }> {
      const canonical = canonicalizeResourceUri(uri);
      const previous = canonical.ok ? await repo.findByUri(canonical.uri) : undefined;
      if (!previous) throw new ResourceNotFoundError(`no resource ${uri} is registered`);
      const scopes = changes.scopes ?? previous.scopes;
      const defaultScopes = changes.defaultScopes ?? previous.defaultScopes.filter((d) => scopes.some((s) => s.name === d));
      const input: UpdateResourceInput = {
        name: changes.name ?? previous.name,
        scopes,
        defaultScopes,
        accessTokenTtl: changes.accessTokenTtl ?? previous.accessTokenTtl,
      };
      const problems: string[] = [];
      const checked = checkChanges(input, problems, previous.scopes);
      if (problems.length) throw new ResourceInputError(problems.join('; '));
      const updated = await repo.update(previous.uri, checked);
      if (!updated) throw new ResourceNotFoundError(`no resource ${uri} is registered`);
      return { previous, updated };
    },

    async remove(uri: string): Promise<boolean> {
      const canonical = canonicalizeResourceUri(uri);
      return canonical.ok ? repo.removeByUri(canonical.uri) : false;
    },
  };
}

export type ResourcesService = ReturnType<typeof createResourcesService>;
