/**
 * The server's lifecycle as an orchestrator sees it (issue 7 §3), on the real `gatehouse serve`
 * process: SIGTERM stops accepting, lets requests in flight finish (within
 * GATEHOUSE_SHUTDOWN_TIMEOUT), closes the pool and exits 0; start-up refuses a schema older (unless
 * asked to migrate) or newer than the version expects, saying what to do.
 */
import { readdirSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { openDatabase } from '../../src/db/database.ts';
import { createMigrator, migrateToLatest } from '../../src/db/migrator.ts';
import { createEmptyPostgresDatabase, queryDatabase } from '../support/database.ts';
import { exitOf, freePort, gatehouse, killAll, start, waitForOutput } from '../support/gatehouse-process.ts';

afterEach(killAll);

async function migratedDatabase(upTo?: string) {
  const created = await createEmptyPostgresDatabase();
  const handle = await openDatabase({ url: created.url, poolSize: 1 });
  try {
    if (upTo) {
      const { error } = await createMigrator(handle.db).migrateTo(upTo);
      if (error) throw error;
    } else {
      await migrateToLatest(handle.db);
    }
  } finally {
    await handle.close();
  }
  return created;
}

const query = queryDatabase;

/** Starts `gatehouse serve` on free ports and waits for its banner. */
async function serve(databaseUrl: string, env: Record<string, string> = {}) {
  const port = await freePort();
  const adminPort = await freePort();
  const child = start(['serve'], { DATABASE_URL: databaseUrl, PORT: String(port), GATEHOUSE_ADMIN_PORT: String(adminPort), GATEHOUSE_LOG_LEVEL: 'info', ...env });
  child.stdin!.end();
  let output = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (output += d));
  await waitForOutput(child, 'Gatehouse is running', 60_000);
  return { child, port, output: () => output };
}

/** A raw HTTP/1.1 connection, to hold a request half-sent across the SIGTERM. */
function rawConnection(port: number): Promise<{ socket: Socket; received: () => string; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let data = '';
    socket.setEncoding('utf8').on('data', (d: string) => (data += d));
    const closed = new Promise<void>((done) => socket.once('close', () => done()));
    socket.once('error', reject);
    socket.once('connect', () => resolve({ socket, received: () => data, closed }));
  });
}

const refused = (port: number) =>
  fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(2000) }).then(
    () => false,
    (err: Error & { cause?: { code?: string } }) => err.cause?.code === 'ECONNREFUSED',
  );

describe('SIGTERM', () => {
  let database: { url: string; drop: () => Promise<void> };
  beforeAll(async () => {
    database = await migratedDatabase();
  });
  afterAll(() => database?.drop());

  test('stops accepting, finishes the request in flight (its work is kept), closes idle connections, exits 0', { timeout: 90_000 }, async () => {
    const { child, port, output } = await serve(database.url, { GATEHOUSE_SHUTDOWN_TIMEOUT: '20s' });
    // An idle kept-alive connection, and a registration whose body is only half sent.
    const idle = await rawConnection(port);
    idle.socket.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n');
    await expect.poll(() => idle.received(), { timeout: 5000 }).toMatch(/HTTP\/1\.1 200[\s\S]*"status":"ok"/);
    const body = JSON.stringify({ client_name: 'In flight at shutdown', redirect_uris: ['http://127.0.0.1:7777/cb'], token_endpoint_auth_method: 'none' });
    const busy = await rawConnection(port);
    busy.socket.write(`POST /register HTTP/1.1\r\nHost: localhost:${port}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 20)}`);
    await new Promise((r) => setTimeout(r, 200));

    const exited = exitOf(child, 30_000);
    const signalledAt = Date.now();
    child.kill('SIGTERM');
    // New connections are refused at once, and the idle one is closed without waiting.
    await expect.poll(() => refused(port), { timeout: 5000, interval: 100 }).toBe(true);
    await idle.closed;
    expect(Date.now() - signalledAt).toBeLessThan(5000);
    expect(child.exitCode).toBeNull(); // still draining: the registration is in flight

    busy.socket.write(body.slice(20));
    await busy.closed;
    expect(busy.received()).toMatch(/^HTTP\/1\.1 201 /);
    expect(busy.received()).toMatch(/\r\nConnection: close\r\n/i);
    const clientId = /"client_id":"([^"]+)"/.exec(busy.received())?.[1];
    expect(clientId).toBeDefined();

    expect(await exited).toEqual({ code: 0, signal: null });
    // Well before the 20 s bound: it exits as soon as the last request is done.
    expect(Date.now() - signalledAt).toBeLessThan(15_000);
    const events = output().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { event?: string; forced?: boolean });
    expect(events).toContainEqual(expect.objectContaining({ event: 'server.stopping' }));
    expect(events).toContainEqual(expect.objectContaining({ event: 'server.stopped', forced: false }));
    // Nothing lost: the registration answered during the drain is stored.
    expect(await query(database.url, "select metadata->>'client_name' as client_name from clients where client_id = $1", [clientId])).toEqual([{ client_name: 'In flight at shutdown' }]);
  });

  test('a request that never finishes does not hold the exit past GATEHOUSE_SHUTDOWN_TIMEOUT', { timeout: 90_000 }, async () => {
    const { child, port, output } = await serve(database.url, { GATEHOUSE_SHUTDOWN_TIMEOUT: '1s' });
    const stuck = await rawConnection(port);
    stuck.socket.write(`POST /register HTTP/1.1\r\nHost: localhost:${port}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"client_name":`);
    await new Promise((r) => setTimeout(r, 200));

    const exited = exitOf(child, 30_000);
    const signalledAt = Date.now();
    child.kill('SIGTERM');
    expect(await exited).toEqual({ code: 0, signal: null });
    const elapsed = Date.now() - signalledAt;
    expect(elapsed).toBeGreaterThanOrEqual(900);
    expect(elapsed).toBeLessThan(6000); // 1 s bound + closing the pool (≤ 2 s) + process exit
    await stuck.closed;
    const events = output().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { event?: string; forced?: boolean });
    expect(events).toContainEqual(expect.objectContaining({ event: 'server.drain_timeout' }));
    expect(events).toContainEqual(expect.objectContaining({ event: 'server.stopped', forced: true }));
  });
});

describe('the schema at start-up', () => {
  const dropAfter: { drop: () => Promise<void> }[] = [];
  afterAll(async () => {
    await Promise.all(dropAfter.map((d) => d.drop()));
  });

  test('an empty database: refused with "run gatehouse migrate"; nothing is created', { timeout: 60_000 }, async () => {
    const empty = await createEmptyPostgresDatabase();
    dropAfter.push(empty);
    const refusedStart = await gatehouse(['serve'], { env: { DATABASE_URL: empty.url }, timeoutMs: 45_000 });
    expect(refusedStart.code).toBe(2);
    expect(refusedStart.stderr).toMatch(/^gatehouse: the database has no Gatehouse schema yet: run `gatehouse migrate` \(or set GATEHOUSE_MIGRATE_ON_START=true\)\n$/);
    expect(await query(empty.url, "select tablename from pg_tables where schemaname = 'public'")).toEqual([]);
  });

  test('an older schema: refused with the pending migrations; served after `gatehouse migrate`, or when asked to migrate at start', { timeout: 90_000 }, async () => {
    const files = readdirSync(new URL('../../migrations/', import.meta.url)).filter((f) => /^\d{4}_.*\.sql$/.test(f)).sort();
    const previous = files.at(-2)!.replace(/\.sql$/, '');
    const latest = files.at(-1)!.replace(/\.sql$/, '');
    const older = await migratedDatabase(previous);
    dropAfter.push(older);

    const [refusedStart, command] = await Promise.all([
      gatehouse(['serve'], { env: { DATABASE_URL: older.url }, timeoutMs: 60_000 }),
      gatehouse(['user', 'list'], { env: { DATABASE_URL: older.url }, timeoutMs: 60_000 }),
    ]);
    expect(refusedStart.code).toBe(2);
    expect(refusedStart.stderr).toContain(`the database schema is older than this version of Gatehouse: 1 migration(s) pending (${latest}). Run \`gatehouse migrate\``);
    expect(command.code).toBe(2);
    expect(command.stderr).toContain('pending');

    // Asked to migrate at start: it does, then serves.
    const { child } = await serve(older.url, { GATEHOUSE_MIGRATE_ON_START: 'true' });
    const exited = exitOf(child, 20_000);
    child.kill('SIGTERM');
    expect(await exited).toEqual({ code: 0, signal: null });
    expect(await query(older.url, 'select name from kysely_migration where name = $1', [latest])).toHaveLength(1);
  });

  test('a newer schema (a later Gatehouse migrated it): refused by serve, migrate and every command, and left untouched', { timeout: 90_000 }, async () => {
    const newer = await migratedDatabase();
    dropAfter.push(newer);
    await query(newer.url, "insert into kysely_migration (name, timestamp) values ('9999_from_the_future', now()::text)");
    const before = await query(newer.url, 'select name from kysely_migration order by name');

    const commands = [['serve'], ['migrate'], ['user', 'list'], ['janitor']];
    const results = await Promise.all(commands.map((args) => gatehouse(args, { env: { DATABASE_URL: newer.url, GATEHOUSE_MIGRATE_ON_START: 'true' }, timeoutMs: 60_000 })));
    for (const [i, result] of results.entries()) {
      expect(result.code, commands[i]!.join(' ')).toBe(2);
      expect(result.stderr).toBe(
        'gatehouse: the database schema is newer than this version of Gatehouse: it has migration(s) this version does not know (9999_from_the_future). ' +
          'Run the Gatehouse version that migrated it (or newer); to go back to this version, restore the backup taken before that migration.\n',
      );
    }
    expect(await query(newer.url, 'select name from kysely_migration order by name')).toEqual(before);
  });
});
