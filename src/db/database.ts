/**
 * Opens the database: PostgreSQL through `pg` when a URL is given, otherwise the embedded PGlite
 * persisted under a data folder (or in memory, for tests).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Kysely, PostgresDialect, type LogEvent } from 'kysely';
import pg from 'pg';
import { PGliteDialect } from './pglite-dialect.ts';
import type { Database } from './schema.ts';

export type DB = Kysely<Database>;

/**
 * Statements that start with this comment are sent as named prepared statements on `pg`: parsed and
 * planned once per connection instead of once per request (PostgreSQL switches them to a generic
 * plan after five executions). For the hot path only — the token request's read-ahead and write
 * statements — whose text does not vary with the data.
 */
export const PREPARE = '/* prepare */';

/** A `pg` pool whose clients send {@link PREPARE}-marked statements by name. */
function preparingPool(pool: pg.Pool) {
  type Client = pg.PoolClient;
  const named = (text: string) => `gh_${createHash('sha1').update(text).digest('hex').slice(0, 20)}`;
  const wrap = (client: Client) =>
    ({
      query(text: string, values?: unknown[]) {
        return text.startsWith(PREPARE) ? client.query({ name: named(text), text, values: values as unknown[] }) : client.query(text, values);
      },
      release: (err?: Error | boolean) => client.release(err),
    }) as unknown as Client;
  return {
    connect: async () => wrap(await pool.connect()),
    end: () => pool.end(),
  };
}

export interface OpenDatabaseOptions {
  /** PostgreSQL connection string; when absent the embedded database is used. */
  url?: string | undefined;
  /** Folder for the embedded database; `memory://` keeps it in memory. */
  dataDir?: string | undefined;
  poolSize?: number;
  /** Called once per SQL statement sent (used to count round trips). */
  onQuery?: (sql: string) => void;
}

/** How a `pg` pool is used right now (for metrics). */
export interface PoolStats {
  /** Connections open (idle or lent out). */
  total: number;
  idle: number;
  /** Requests queued for a connection. */
  waiting: number;
  max: number;
}

export interface DatabaseHandle {
  db: DB;
  kind: 'postgres' | 'pglite';
  /** PostgreSQL only: the connection pool's use. */
  poolStats?: () => PoolStats;
  close(): Promise<void>;
}

export async function openDatabase(options: OpenDatabaseOptions): Promise<DatabaseHandle> {
  const log = options.onQuery
    ? (event: LogEvent) => options.onQuery!(event.query.sql)
    : undefined;

  if (options.url) {
    const pool = new pg.Pool({ connectionString: options.url, max: options.poolSize ?? 10 });
    // An idle client that errors (e.g. the server restarted) must not crash the process.
    pool.on('error', () => {});
    const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: preparingPool(pool) as unknown as pg.Pool }), ...(log ? { log } : {}) });
    const max = options.poolSize ?? 10;
    return {
      db,
      kind: 'postgres',
      poolStats: () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount, max }),
      close: () => db.destroy(),
    };
  }

  const { PGlite } = await import('@electric-sql/pglite');
  const dataDir = options.dataDir ?? './data';
  let client;
  let unlock = () => {};
  if (dataDir.startsWith('memory://')) {
    client = new PGlite(dataDir);
  } else {
    const dir = path.resolve(dataDir, 'pglite');
    mkdirSync(dir, { recursive: true });
    unlock = lockDataDir(path.resolve(dataDir));
    client = new PGlite(dir);
  }
  const db = new Kysely<Database>({ dialect: new PGliteDialect(client), ...(log ? { log } : {}) });
  return {
    db,
    kind: 'pglite',
    async close() {
      await db.destroy();
      unlock();
    },
  };
}

export class DatabaseInUseError extends Error {
  readonly code = 'database_in_use';
}

/**
 * The embedded database belongs to one process at a time; a second one would corrupt it. A lock
 * file holds the owner's pid; a stale lock (its process is gone) is taken over.
 */
function lockDataDir(dir: string): () => void {
  const file = path.join(dir, 'gatehouse.lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, String(process.pid), { flag: 'wx' });
      return () => rmSync(file, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number(readFileSync(file, 'utf8'));
      if (pid && pid !== process.pid && isAlive(pid)) {
        throw new DatabaseInUseError(
          `the embedded database in ${dir} is in use by another Gatehouse process (pid ${pid}). ` +
            'Stop it first, or use PostgreSQL (DATABASE_URL), which several processes can share.',
        );
      }
      rmSync(file, { force: true });
    }
  }
  throw new DatabaseInUseError(`could not lock the embedded database in ${dir}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
