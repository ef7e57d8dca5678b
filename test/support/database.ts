/**
 * A fresh, migrated database for one test file: a new PostgreSQL database (dropped afterwards) or,
 * with GATEHOUSE_TEST_DB=pglite, an in-memory embedded PGlite.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { openDatabase, type DatabaseHandle } from '../../src/db/database.ts';
import { migrateToLatest } from '../../src/db/migrator.ts';

export const ADMIN_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export function testDatabaseKind(): 'postgres' | 'pglite' {
  return process.env.GATEHOUSE_TEST_DB === 'pglite' ? 'pglite' : 'postgres';
}

export interface TestDatabase extends DatabaseHandle {
  url: string | undefined;
  /** SQL statements sent since the last reset. */
  queries: string[];
}

/** Creates an empty PostgreSQL database and returns its URL and a function that drops it. */
export async function createEmptyPostgresDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `gatehouse_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: ADMIN_URL });
      await c.connect();
      await c.query(`drop database if exists ${name} with (force)`);
      await c.end();
    },
  };
}

export async function createTestDatabase(options: { kind?: 'postgres' | 'pglite'; migrate?: boolean } = {}): Promise<TestDatabase> {
  const kind = options.kind ?? testDatabaseKind();
  const queries: string[] = [];
  const onQuery = (sql: string) => queries.push(sql);
  let handle: DatabaseHandle;
  let url: string | undefined;
  let drop = async () => {};
  if (kind === 'pglite') {
    handle = await openDatabase({ dataDir: 'memory://', onQuery });
  } else {
    const created = await createEmptyPostgresDatabase();
    url = created.url;
    drop = created.drop;
    // Bounded as a server is (GATEHOUSE_DATABASE_TIMEOUT), generously: every test then runs the
    // commit deadlines and server-side bounds that production runs (src/db/database.ts).
    handle = await openDatabase({ url, poolSize: 10, onQuery, timeoutMs: 20_000 });
  }
  if (options.migrate !== false) await migrateToLatest(handle.db);
  queries.length = 0;
  return {
    ...handle,
    url,
    queries,
    async close() {
      await handle.close();
      await drop();
    },
  };
}

/** One statement on the database at `url`, on a connection of its own (outside any app's pool). */
export async function queryDatabase<T extends pg.QueryResultRow>(url: string, text: string, values: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(text, values)).rows;
  } finally {
    await client.end();
  }
}

/** Runs SQL as the PostgreSQL superuser, outside any app's pool. */
export async function asSuperuser(statement: string): Promise<void> {
  await queryDatabase(ADMIN_URL, statement);
}

/**
 * Runs `work` while the test database at `url` refuses connections and its open ones are cut:
 * the database "going away" for the app, without touching anyone else's database.
 */
export async function whileDatabaseIsAway<T>(url: string, work: () => Promise<T>): Promise<T> {
  const name = new URL(url).pathname.slice(1);
  await asSuperuser(`alter database ${name} allow_connections false`);
  await asSuperuser(`select pg_terminate_backend(pid) from pg_stat_activity where datname = '${name}' and pid <> pg_backend_pid()`);
  try {
    return await work();
  } finally {
    await asSuperuser(`alter database ${name} allow_connections true`);
  }
}
