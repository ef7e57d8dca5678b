/**
 * `/healthz` and `/readyz` (issue 7 §2): alive without the database; ready only when the database
 * answers, the schema is the one this version expects, and signing keys are loaded.
 */
import request from 'supertest';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { startTestApp, type TestApp } from '../support/app.ts';
import { testDatabaseKind, whileDatabaseIsAway } from '../support/database.ts';

let app: TestApp;
beforeAll(async () => {
  app = await startTestApp();
});
afterAll(() => app?.close());

test('a ready instance: 200 on both, no-store, every check ok', async () => {
  const alive = await request(app.issuer).get('/healthz');
  expect(alive.status).toBe(200);
  expect(alive.body).toEqual({ status: 'ok' });
  expect(alive.headers['cache-control']).toBe('no-store');
  const ready = await request(app.issuer).get('/readyz');
  expect(ready.status).toBe(200);
  expect(ready.body).toEqual({ status: 'ready', checks: { database: 'ok', migrations: 'ok', keys: 'ok' } });
  expect((await request(app.issuer).post('/readyz')).status).toBe(405);
});

test('mid rolling upgrade (the database migrated by a newer Gatehouse), a running instance stays ready and says so', async () => {
  await app.db.insertInto('kysely_migration' as never).values({ name: '9999_from_the_future', timestamp: new Date().toISOString() } as never).execute();
  try {
    const ready = await request(app.issuer).get('/readyz');
    expect(ready.status).toBe(200);
    expect(ready.body).toEqual({
      status: 'ready',
      checks: {
        database: 'ok',
        migrations: 'ok, but the database has migrations this version does not know (9999_from_the_future): finish upgrading this instance',
        keys: 'ok',
      },
    });
    expect((await request(app.issuer).get('/healthz')).status).toBe(200);
  } finally {
    await app.db.deleteFrom('kysely_migration' as never).where('name' as never, '=', '9999_from_the_future' as never).execute();
  }
  expect((await request(app.issuer).get('/readyz')).body.checks.migrations).toBe('ok');
});

test('a database missing a migration this version needs is not ready, and says what to run', async () => {
  const [last] = await app.db.selectFrom('kysely_migration' as never).select('name' as never).orderBy('name' as never, 'desc').limit(1).execute() as { name: string }[];
  await app.db.deleteFrom('kysely_migration' as never).where('name' as never, '=', last!.name as never).execute();
  try {
    const ready = await request(app.issuer).get('/readyz');
    expect(ready.status).toBe(503);
    expect(ready.body).toEqual({ status: 'not_ready', checks: { database: 'ok', migrations: `pending migrations (${last!.name}): run \`gatehouse migrate\``, keys: 'ok' } });
  } finally {
    await app.db.insertInto('kysely_migration' as never).values({ name: last!.name, timestamp: new Date().toISOString() } as never).execute();
  }
  expect((await request(app.issuer).get('/readyz')).status).toBe(200);
});

test.runIf(testDatabaseKind() === 'postgres')('while the database is away: alive, not ready; ready again when it is back, without a restart', async () => {
  await whileDatabaseIsAway(app.database.url!, async () => {
    expect((await request(app.issuer).get('/healthz')).status).toBe(200);
    const ready = await request(app.issuer).get('/readyz');
    expect(ready.status).toBe(503);
    expect(ready.body.checks.database).toBe('unreachable');
    expect(JSON.stringify(ready.body)).not.toMatch(/ECONN|stack|pg_|password/i);
  });
  expect((await request(app.issuer).get('/readyz')).status).toBe(200);
});
