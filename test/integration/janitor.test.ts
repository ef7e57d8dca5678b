/**
 * Housekeeping (issue 7 §5): the janitor deletes what has expired — tokens, codes, sessions,
 * interactions, grants, stale pending clients — one instance at a time (a PostgreSQL advisory
 * lock), from `gatehouse janitor` and on the server's schedule; and under sustained churn the
 * tables stay bounded instead of growing with traffic.
 */
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { runJanitor } from '../../src/app/janitor.ts';
import { startServer } from '../../src/app/server.ts';
import { loadConfig } from '../../src/config/config.ts';
import { ADVISORY_LOCKS } from '../../src/db/advisory-lock.ts';
import type { DB } from '../../src/db/database.ts';
import { createLogger } from '../../src/http/logger.ts';
import { seed, startTestApp, type TestApp } from '../support/app.ts';
import { createTestDatabase, testDatabaseKind, type TestDatabase } from '../support/database.ts';
import { freePort, gatehouse, killAll } from '../support/gatehouse-process.ts';
import { obtainTokens, registerClient, tokenRequest } from '../support/oauth.ts';

const onPostgres = testDatabaseKind() === 'postgres';
const DAY = 86_400;

/** Tables the janitor keeps bounded, and the clock columns that age their rows. */
const MANAGED = ['oidc_payloads', 'clients', 'client_metadata_documents', 'rate_limit_counters', 'sign_in_attempts', 'admin_sessions'];

/**
 * Time passes: every timestamp in the managed tables moves `seconds` into the past, so rows age
 * exactly as they would had the clock moved on (what was live for longer than that stays live).
 */
async function advanceClock(db: DB, seconds: number): Promise<void> {
  const columns = await sql<{ table_name: string; column_name: string }>`
    SELECT table_name, column_name FROM information_schema.columns
    WHERE table_schema = current_schema() AND data_type = 'timestamp with time zone' AND table_name IN (${sql.join(MANAGED)})`.execute(db);
  const byTable = new Map<string, string[]>();
  for (const { table_name, column_name } of columns.rows) byTable.set(table_name, [...(byTable.get(table_name) ?? []), column_name]);
  for (const [table, cols] of byTable) {
    await sql`UPDATE ${sql.table(table)} SET ${sql.join(cols.map((c) => sql`${sql.ref(c)} = ${sql.ref(c)} - make_interval(secs => ${seconds})`))}`.execute(db);
  }
}

async function rowCounts(db: DB): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const table of MANAGED) {
    const { rows } = await sql<{ n: string }>`SELECT count(*) AS n FROM ${sql.table(table)}`.execute(db);
    out[table] = Number(rows[0]!.n);
  }
  return out;
}

/** An expired oidc_payloads row (as oidc-provider leaves them), expired `secondsAgo` ago. */
async function expiredPayloads(db: DB, count: number, secondsAgo = 3600): Promise<void> {
  await sql`
    INSERT INTO oidc_payloads (model, id, payload, expires_at)
    SELECT 'AccessToken', 'janitor-' || gen_random_uuid(), '{}'::jsonb, now() - make_interval(secs => ${secondsAgo})
    FROM generate_series(1, ${count})`.execute(db);
}

const countExpired = async (db: DB) =>
  Number((await sql<{ n: string }>`SELECT count(*) AS n FROM oidc_payloads WHERE expires_at < now()`.execute(db)).rows[0]!.n);

describe.runIf(onPostgres)('one instance at a time', () => {
  let database: TestDatabase;
  let holder: pg.Client | undefined;
  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterEach(async () => {
    await holder?.end().catch(() => {});
    holder = undefined;
  });
  afterAll(() => database?.close());

  const clients = { expireStalePending: async () => [] as string[] };
  const janitor = () => runJanitor({ db: database.db, databaseUrl: database.url, clients, pendingClientTtl: 0, graceSeconds: 0 });

  async function holdLock(): Promise<pg.Client> {
    holder = new pg.Client({ connectionString: database.url });
    holder.on('error', () => {}); // terminated on purpose below
    await holder.connect();
    await holder.query('SELECT pg_advisory_lock($1)', [ADVISORY_LOCKS.janitor.toString()]);
    return holder;
  }

  test('while another instance holds the lock, it skips the round and deletes nothing; then it runs', async () => {
    await expiredPayloads(database.db, 10);
    const other = await holdLock();
    expect(await janitor()).toEqual({ ran: false, reason: 'another instance is running it' });
    expect(await countExpired(database.db)).toBe(10);

    await other.query('SELECT pg_advisory_unlock($1)', [ADVISORY_LOCKS.janitor.toString()]);
    const outcome = await janitor();
    expect(outcome).toMatchObject({ ran: true, report: { total: 10, payloads: { AccessToken: 10 } } });
    expect(await countExpired(database.db)).toBe(0);
  });

  test('an instance that died holding the lock does not block the others: the lock goes with its session', async () => {
    await expiredPayloads(database.db, 3);
    const other = await holdLock();
    const { rows } = await other.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    expect((await janitor()).ran).toBe(false);
    await database.db.executeQuery(sql`SELECT pg_terminate_backend(${rows[0]!.pid})`.compile(database.db));
    await expect.poll(async () => (await janitor()).ran, { timeout: 5000 }).toBe(true);
    expect(await countExpired(database.db)).toBe(0);
  });

  test('many instances at once: each row is deleted once, no run fails, and at least one ran', async () => {
    await expiredPayloads(database.db, 12_000); // more than two delete batches
    const outcomes = await Promise.all(Array.from({ length: 4 }, () => janitor()));
    const ran = outcomes.filter((o) => o.ran);
    expect(ran.length).toBeGreaterThanOrEqual(1);
    expect(ran.reduce((n, o) => n + (o.ran ? o.report.total : 0), 0)).toBe(12_000);
    expect(await countExpired(database.db)).toBe(0);
  });

  test('`gatehouse janitor` runs once and reports what it deleted; with the lock taken it says so and exits 0', { timeout: 60_000 }, async () => {
    await expiredPayloads(database.db, 7);
    const env = { DATABASE_URL: database.url! };
    const other = await holdLock();
    const skipped = await gatehouse(['janitor'], { env });
    expect(skipped).toMatchObject({ code: 0, stderr: '' });
    expect(skipped.stdout).toBe('Another Gatehouse instance is running the janitor right now; nothing done.\n');
    await other.end();
    holder = undefined;

    const ran = await gatehouse(['janitor'], { env });
    expect(ran).toMatchObject({ code: 0, stderr: '' });
    expect(ran.stdout).toMatch(/^Deleted 7 AccessToken in \d+ ms\.\n$/);
    const again = await gatehouse(['janitor', '--json'], { env });
    expect(JSON.parse(again.stdout)).toMatchObject({ ran: true, report: { total: 0, expiredClients: [] } });
    killAll();
  });
});

describe.runIf(onPostgres)('on the server', () => {
  test('every GATEHOUSE_SWEEP_INTERVAL the server runs the janitor by itself', { timeout: 60_000 }, async () => {
    const database = await createTestDatabase();
    const port = await freePort();
    const running = await startServer(
      loadConfig({
        DATABASE_URL: database.url,
        PORT: String(port),
        GATEHOUSE_ADMIN_PORT: '0',
        GATEHOUSE_SWEEP_INTERVAL: '1s',
        GATEHOUSE_LOG_LEVEL: 'silent',
        GATEHOUSE_KEY_ENCRYPTION_KEY: '11'.repeat(32),
      }),
      createLogger('silent'),
    );
    try {
      await expiredPayloads(database.db, 5, 600);
      await expect.poll(() => countExpired(database.db), { timeout: 10_000, interval: 250 }).toBe(0);
    } finally {
      await running.stop();
      await database.close();
    }
  });
});

describe('under sustained churn the tables stay bounded', () => {
  let app: TestApp;
  let registrar: TestApp;
  beforeAll(async () => {
    // Lifetimes of a few days, so that a day per round shows rows living, piling up, then leaving.
    app = await startTestApp({ env: { GATEHOUSE_PENDING_CLIENT_TTL: '3d', GATEHOUSE_REFRESH_TOKEN_IDLE_TTL: '2d', GATEHOUSE_REFRESH_TOKEN_ABSOLUTE_TTL: '4d' } });
    // Registrations nobody approves: a second instance on the same database with manual approval.
    registrar = await startTestApp({ database: app.database, env: { GATEHOUSE_CLIENT_APPROVAL: 'manual' } });
    await seed(app);
  });
  afterAll(async () => {
    await registrar?.close();
    await app?.close();
  });

  test('a day per round of sign-ins, code exchanges, refreshes and abandoned registrations: sizes level off', { timeout: 180_000 }, async () => {
    const ROUNDS = 9;
    const sizes: number[] = [];
    const created: number[] = [];
    const client = await registerClient(app.issuer);
    for (let round = 0; round < ROUNDS; round++) {
      const before = await rowCounts(app.db);
      const beforeTotal = Object.values(before).reduce((a, b) => a + b, 0);
      // Traffic: three users' sign-ins (session, interaction, code, grant), each followed by two
      // refreshes (rotated refresh tokens kept until they expire, for reuse detection), and two
      // registrations that are never approved.
      for (let i = 0; i < 3; i++) {
        const { tokens } = await obtainTokens(app.issuer, { client });
        const r1 = await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: tokens.body.refresh_token, client_id: client.client_id });
        await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: r1.body.refresh_token, client_id: client.client_id });
      }
      await registerClient(registrar.issuer);
      await registerClient(registrar.issuer);
      const during = await rowCounts(app.db);
      created.push(Object.values(during).reduce((a, b) => a + b, 0) - beforeTotal);

      // A day later the janitor runs: sessions (12 h), interactions, codes and access tokens are
      // gone; refresh tokens and grants live up to 4 days, abandoned registrations 3.
      await advanceClock(app.db, DAY);
      const outcome = await runJanitor({ db: app.db, databaseUrl: app.database.url, clients: app.clients, pendingClientTtl: app.config.pendingClientTtl });
      expect(outcome.ran).toBe(true);
      const after = await rowCounts(app.db);
      sizes.push(Object.values(after).reduce((a, b) => a + b, 0));
    }
    const totalCreated = created.reduce((a, b) => a + b, 0);
    if (process.env.JANITOR_TRACE) console.log({ created, sizes });
    // Each round adds rows; without the janitor the tables would hold all of them.
    expect(Math.min(...created)).toBeGreaterThan(10);
    // With it, the size grows while rows are younger than the longest lifetime (4 days), then
    // stops: no later round is bigger than the largest of the first five, and what is left is a
    // fraction of what was created.
    const plateau = Math.max(...sizes.slice(0, 5));
    for (const size of sizes.slice(5)) expect(size).toBeLessThanOrEqual(plateau);
    expect(sizes[4]!).toBeGreaterThan(sizes[0]!); // rows really lived across rounds
    expect(sizes.at(-1)!).toBeLessThan(totalCreated / 2);
    // Abandoned registrations leave after 3 days (two a round: at most the last three rounds'
    // are left); the approved client in use is kept.
    const pending = await app.db.selectFrom('clients').select('client_id').where('status', '=', 'pending').execute();
    expect(pending.length).toBeGreaterThan(0);
    expect(pending.length).toBeLessThanOrEqual(6);
    expect(await app.db.selectFrom('clients').select('client_id').where('client_id', '=', client.client_id).executeTakeFirst()).toBeDefined();
  });
});
