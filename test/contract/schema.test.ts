/**
 * The Kysely table types in src/db/schema.ts must describe the migrated database.
 *
 * `EXPECTED` is checked twice: by the compiler against `Database` (every table and every column of
 * the interface must appear, nothing more, and each column's nullability must agree with its
 * TypeScript select type), and here at run time against the columns the migrations create.
 */
import { readdir } from 'node:fs/promises';
import type { SelectType } from 'kysely';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { MIGRATIONS_DIR, migrateToLatest, pendingMigrations } from '../../src/db/migrator.ts';
import type { Database } from '../../src/db/schema.ts';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';

type Nullability = 'nullable' | 'not null';

/** For each column of a table type: 'nullable' when its select type admits null, else 'not null'. */
type ColumnsOf<Table> = {
  [Column in keyof Table]-?: null extends SelectType<Table[Column]> ? 'nullable' : 'not null';
};

type ExpectedSchema = { [Table in keyof Database]: ColumnsOf<Database[Table]> };

const EXPECTED = {
  oidc_payloads: {
    model: 'not null',
    id: 'not null',
    payload: 'not null',
    grant_id: 'nullable',
    uid: 'nullable',
    account_id: 'nullable',
    client_id: 'nullable',
    expires_at: 'nullable',
    consumed_at: 'nullable',
    created_at: 'not null',
    rotated_from: 'nullable',
    reused_at: 'nullable',
  },
  clients: {
    client_id: 'not null',
    metadata: 'not null',
    client_secret_enc: 'nullable',
    client_secret_hash: 'nullable',
    created_at: 'not null',
    updated_at: 'not null',
    status: 'not null',
    registration_method: 'not null',
    source_ip: 'nullable',
    user_agent: 'nullable',
    ceiling: 'nullable',
    approved_redirect_uris: 'nullable',
    status_reason: 'nullable',
    status_changed_at: 'nullable',
    status_changed_by: 'nullable',
    last_used_at: 'nullable',
    requested: 'not null',
    metadata_fingerprint: 'nullable',
  },
  client_metadata_documents: {
    client_id: 'not null',
    document: 'not null',
    fetched_at: 'not null',
    expires_at: 'not null',
  },
  resources: {
    id: 'not null',
    uri: 'not null',
    name: 'not null',
    scopes: 'not null',
    default_scopes: 'not null',
    access_token_ttl: 'not null',
    created_at: 'not null',
    updated_at: 'not null',
  },
  accounts: {
    id: 'not null',
    email: 'not null',
    password_hash: 'not null',
    disabled_at: 'nullable',
    created_at: 'not null',
    updated_at: 'not null',
    role: 'not null',
  },
  audit_events: {
    id: 'not null',
    occurred_at: 'not null',
    event: 'not null',
    actor: 'nullable',
    client_id: 'nullable',
    account_id: 'nullable',
    resource: 'nullable',
    source_ip: 'nullable',
    user_agent: 'nullable',
    request_id: 'nullable',
    details: 'not null',
    prev_hash: 'nullable',
    hash: 'nullable',
    txid: 'nullable',
    mac: 'nullable',
  },
  audit_checkpoints: {
    seq: 'not null',
    epoch: 'not null',
    floor_id: 'not null',
    horizon: 'not null',
    last_txid: 'nullable',
    last_id: 'not null',
    row_count: 'not null',
    ids: 'not null',
    leaves: 'not null',
    root: 'not null',
    invalid_ids: 'not null',
    prev_digest: 'not null',
    digest: 'not null',
    key_id: 'not null',
    signature: 'not null',
    sealed_at: 'not null',
  },
  admin_sessions: {
    id: 'not null',
    account_id: 'not null',
    csrf_token: 'not null',
    created_at: 'not null',
    last_seen_at: 'not null',
    expires_at: 'not null',
  },
  sign_in_attempts: {
    key: 'not null',
    failures: 'not null',
    locked_until: 'nullable',
    updated_at: 'not null',
  },
  admin_api_tokens: {
    id: 'not null',
    account_id: 'not null',
    name: 'not null',
    token_digest: 'not null',
    created_at: 'not null',
    last_used_at: 'nullable',
    revoked_at: 'nullable',
  },
  rate_limit_counters: {
    key: 'not null',
    window_start: 'not null',
    hits: 'not null',
  },
  keys: {
    kid: 'not null',
    use: 'not null',
    alg: 'nullable',
    public_jwk: 'nullable',
    private_enc: 'not null',
    created_at: 'not null',
    retired_at: 'nullable',
    activates_at: 'nullable',
    unpublish_at: 'nullable',
  },
} as const satisfies ExpectedSchema;

const TABLES = Object.keys(EXPECTED) as (keyof Database)[];

let database: TestDatabase;
let actual: Map<string, Record<string, Nullability>>;

beforeAll(async () => {
  database = await createTestDatabase();
  const tables = await database.db.introspection.getTables();
  actual = new Map(
    tables
      .filter((t) => (t.schema ?? 'public') === 'public' && !t.isView)
      .map((t) => [t.name, Object.fromEntries(t.columns.map((c) => [c.name, c.isNullable ? 'nullable' : 'not null']))]),
  );
});
afterAll(() => database?.close());

describe('the Database interface matches the migrated schema', () => {
  test('the migrations create exactly the tables the interface declares', () => {
    expect([...actual.keys()].sort()).toEqual([...TABLES].sort());
  });

  test.each(TABLES)('%s: column names and nullability', (table) => {
    expect(actual.get(table)).toEqual(EXPECTED[table]);
  });
});

describe('migrator', () => {
  test('migrating twice is a no-op and leaves nothing pending', async () => {
    const onDisk = (await readdir(MIGRATIONS_DIR))
      .filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f))
      .map((f) => f.replace(/\.sql$/, ''))
      .sort();
    expect(onDisk).toContain('0001_initial');

    const empty = await createTestDatabase({ migrate: false });
    try {
      expect(await pendingMigrations(empty.db)).toEqual(onDisk);
      expect(await migrateToLatest(empty.db)).toEqual(onDisk);
      expect(await pendingMigrations(empty.db)).toEqual([]);
      expect(await migrateToLatest(empty.db)).toEqual([]);
      expect(await pendingMigrations(empty.db)).toEqual([]);
    } finally {
      await empty.close();
    }
  });

  test('the shared test database is fully migrated', async () => {
    expect(await pendingMigrations(database.db)).toEqual([]);
    expect(await migrateToLatest(database.db)).toEqual([]);
  });
});
