/**
 * A fresh PostgreSQL database for one benchmark run, created on BENCH_DATABASE_URL's server and
 * dropped at the end.
 */
import pg from 'pg';

export const BENCH_DATABASE_URL = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface BenchDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

async function withAdmin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: BENCH_DATABASE_URL });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Creates `<prefix>_<timestamp>_<random>`; `drop()` removes it (idempotent, forcing out sessions). */
export async function createBenchDatabase(prefix = 'gatehouse_bench'): Promise<BenchDatabase> {
  const stamp = new Date().toISOString().replace(/[-:T]/g, '').slice(0, 14);
  const name = `${prefix}_${stamp}_${Math.random().toString(36).slice(2, 8)}`;
  await withAdmin((c) => c.query(`create database ${name}`));
  const url = new URL(BENCH_DATABASE_URL);
  url.pathname = `/${name}`;
  let dropped = false;
  return {
    name,
    url: url.toString(),
    async drop() {
      if (dropped) return;
      dropped = true;
      await withAdmin((c) => c.query(`drop database if exists ${name} with (force)`));
    },
  };
}

/** The server's version string, e.g. "PostgreSQL 15.20 (Debian …)". */
export async function postgresVersion(): Promise<string> {
  return withAdmin(async (c) => String((await c.query<{ version: string }>('select version()')).rows[0]?.version ?? 'unknown'));
}

/**
 * Sets PostgreSQL parameters for every future connection to `database` (ALTER DATABASE … SET), for
 * diagnosis: `synchronous_commit=off`, for instance, shows how much of a figure is waiting for WAL
 * flushes. Only plain names and values are accepted.
 */
export async function setDatabaseParameters(database: string, settings: Record<string, string>): Promise<void> {
  await withAdmin(async (c) => {
    for (const [name, value] of Object.entries(settings)) {
      if (!/^[a-z_][a-z0-9_.]*$/i.test(name) || !/^[\w.-]+$/.test(value) || !value) throw new Error(`BENCH_PG_SETTINGS: cannot set ${name}=${value}`);
      await c.query(`alter database ${database} set ${name} = '${value}'`);
    }
  });
}
