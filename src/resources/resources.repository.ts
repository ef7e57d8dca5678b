import { sql } from 'kysely';
import type { DB } from '../db/database.ts';
import type { ResourceScope } from '../db/schema.ts';
import { asDate, readAhead, readAheadKeys } from '../db/request-cache.ts';
import { current } from '../db/unit-of-work.ts';

export interface Resource {
  id: string;
  uri: string;
  name: string;
  scopes: ResourceScope[];
  defaultScopes: string[];
  accessTokenTtl: number;
  createdAt: Date;
}

export type NewResource = Omit<Resource, 'id' | 'createdAt'>;

/** What may change about a registered resource: everything but its URI. */
export type ResourceChanges = Omit<NewResource, 'uri'>;

/** The registry as read ahead with a token request (oidc/token-prefetch.ts): JSON rows, timestamps as strings. */
function readAheadResources(): Resource[] | undefined {
  const ahead = readAhead<Parameters<typeof toResource>[0][]>(readAheadKeys.resources);
  return ahead ? (ahead.value ?? []).map((row) => toResource({ ...row, created_at: asDate(row.created_at)! })) : undefined;
}

function toResource(row: {
  id: string;
  uri: string;
  name: string;
  scopes: ResourceScope[];
  default_scopes: string[];
  access_token_ttl: number;
  created_at: Date;
}): Resource {
  return {
    id: row.id,
    uri: row.uri,
    name: row.name,
    scopes: row.scopes,
    defaultScopes: row.default_scopes,
    accessTokenTtl: row.access_token_ttl,
    createdAt: row.created_at,
  };
}

export function createResourcesRepository(db: DB) {
  return {
    async list(): Promise<Resource[]> {
      const ahead = readAheadResources();
      if (ahead) return ahead;
      const rows = await current(db).selectFrom('resources').selectAll().orderBy('uri').execute();
      return rows.map(toResource);
    },
    async findByUri(uri: string): Promise<Resource | undefined> {
      const ahead = readAheadResources();
      if (ahead) return ahead.find((r) => r.uri === uri);
      const row = await current(db).selectFrom('resources').selectAll().where('uri', '=', uri).executeTakeFirst();
      return row && toResource(row);
    },
    async findById(id: string): Promise<Resource | undefined> {
      if (!/^[0-9a-f-]{36}$/i.test(id)) return undefined;
      const row = await current(db).selectFrom('resources').selectAll().where('id', '=', id).executeTakeFirst();
      return row && toResource(row);
    },
    /** The only resource when exactly one is registered, else undefined (one query). */
    async findSole(): Promise<Resource | undefined> {
      const rows = await current(db).selectFrom('resources').selectAll().limit(2).execute();
      return rows.length === 1 ? toResource(rows[0]!) : undefined;
    },
    async insert(resource: NewResource): Promise<Resource> {
      const row = await current(db)
        .insertInto('resources')
        .values({
          uri: resource.uri,
          name: resource.name,
          scopes: JSON.stringify(resource.scopes),
          default_scopes: JSON.stringify(resource.defaultScopes),
          access_token_ttl: resource.accessTokenTtl,
        })
        .onConflict((oc) => oc.column('uri').doNothing())
        .returningAll()
        .executeTakeFirst();
      if (!row) throw new ResourceExistsError(resource.uri);
      return toResource(row);
    },
    /** Replaces name, scopes, default scopes and lifetime; undefined when no resource has this URI. */
    async update(uri: string, changes: ResourceChanges): Promise<Resource | undefined> {
      const row = await current(db)
        .updateTable('resources')
        .set({
          name: changes.name,
          scopes: JSON.stringify(changes.scopes),
          default_scopes: JSON.stringify(changes.defaultScopes),
          access_token_ttl: changes.accessTokenTtl,
          updated_at: sql<Date>`now()`,
        })
        .where('uri', '=', uri)
        .returningAll()
        .executeTakeFirst();
      return row && toResource(row);
    },
    async removeByUri(uri: string): Promise<boolean> {
      const result = await current(db).deleteFrom('resources').where('uri', '=', uri).executeTakeFirst();
      return result.numDeletedRows > 0n;
    },
  };
}

export class ResourceExistsError extends Error {
  readonly code = 'resource_exists';
  constructor(uri: string) {
    super(`a resource with URI ${uri} is already registered`);
  }
}

export type ResourcesRepository = ReturnType<typeof createResourcesRepository>;
