/**
 * Applies the ordered SQL files in migrations/. Files are frozen once landed; each runs in its own
 * transaction, and Kysely's migration lock keeps two instances from migrating at once.
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql, type Kysely } from 'kysely';
import { Migrator, type Migration, type MigrationProvider, type MigrationResultSet } from 'kysely/migration';

export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations/', import.meta.url));

/** A migration file: `NNNN_name.sql`, applied in name order. */
const MIGRATION_FILE = /^\d{4}_[a-z0-9_]+\.sql$/;

class SqlFileMigrationProvider implements MigrationProvider {
  constructor(private readonly dir: string) {}
  async getMigrations(): Promise<Record<string, Migration>> {
    const files = (await readdir(this.dir)).filter((f) => MIGRATION_FILE.test(f)).sort();
    const out: Record<string, Migration> = {};
    for (const file of files) {
      const text = await readFile(path.join(this.dir, file), 'utf8');
      out[file.replace(/\.sql$/, '')] = {
        up: async (db: Kysely<any>) => {
          await sql.raw(text).execute(db);
        },
      };
    }
    return out;
  }
}

export function createMigrator(db: Kysely<any>, dir = MIGRATIONS_DIR): Migrator {
  return new Migrator({ db, provider: new SqlFileMigrationProvider(dir) });
}

/** Applies every pending migration; throws with the failing migration's name on error. */
export async function migrateToLatest(db: Kysely<any>): Promise<string[]> {
  const { error, results }: MigrationResultSet = await createMigrator(db).migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === 'Error')?.migrationName;
    throw new Error(`migration ${failed ?? '(unknown)'} failed: ${(error as Error).message ?? String(error)}`, { cause: error });
  }
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}

/** Names of migrations that exist on disk but are not applied yet. */
export async function pendingMigrations(db: Kysely<any>): Promise<string[]> {
  return (await schemaStatus(db)).pending;
}

/**
 * Whether the database's schema is the one this version expects: migrations on disk not applied
 * (`pending`), and migrations applied that this version does not know (`unknown`: the database
 * was migrated by a newer Gatehouse). The list on disk is read once per process.
 */
let onDisk: Promise<string[]> | undefined;
const migrationNames = async (dir: string) => (await readdir(dir)).filter((f) => MIGRATION_FILE.test(f)).map((f) => f.replace(/\.sql$/, '')).sort();
export async function schemaStatus(db: Kysely<any>, dir = MIGRATIONS_DIR): Promise<{ pending: string[]; unknown: string[] }> {
  const known = await (dir === MIGRATIONS_DIR ? (onDisk ??= migrationNames(dir)) : migrationNames(dir));
  let applied: string[];
  try {
    applied = (await sql<{ name: string }>`SELECT name FROM kysely_migration`.execute(db)).rows.map((r) => r.name);
  } catch (err) {
    if ((err as { code?: string }).code === '42P01') applied = []; // no migration table yet
    else throw err;
  }
  return { pending: known.filter((n) => !applied.includes(n)), unknown: applied.filter((n) => !known.includes(n)) };
}

/** The database's schema is not the one this version of Gatehouse was written for. */
export class SchemaMismatchError extends Error {
  readonly code = 'schema_mismatch';
}

/**
 * Makes sure the schema is exactly the one this version expects before anything is served
 * (issue 7 §3). Pending migrations are applied only when `migrate` is set
 * (GATEHOUSE_MIGRATE_ON_START, or the `gatehouse migrate` command); otherwise they, and
 * migrations this version does not know (a newer Gatehouse migrated the database), refuse start-up
 * with a message that says what to do. Returns the migrations applied.
 */
export async function ensureSchema(db: Kysely<any>, options: { migrate: boolean }): Promise<string[]> {
  const { pending, unknown } = await schemaStatus(db);
  if (unknown.length) {
    throw new SchemaMismatchError(
      `the database schema is newer than this version of Gatehouse: it has migration(s) this version does not know (${unknown.join(', ')}). ` +
        'Run the Gatehouse version that migrated it (or newer); to go back to this version, restore the backup taken before that migration.',
    );
  }
  if (!pending.length) return [];
  if (options.migrate) return migrateToLatest(db);
  const fresh = pending.length === (await migrationNames(MIGRATIONS_DIR)).length;
  throw new SchemaMismatchError(
    fresh
      ? 'the database has no Gatehouse schema yet: run `gatehouse migrate` (or set GATEHOUSE_MIGRATE_ON_START=true)'
      : `the database schema is older than this version of Gatehouse: ${pending.length} migration(s) pending (${pending.join(', ')}). ` +
          'Run `gatehouse migrate` (or set GATEHOUSE_MIGRATE_ON_START=true); take a backup first.',
  );
}
