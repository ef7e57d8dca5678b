/**
 * The least-privilege runtime role (migration 0009; docs/deployment.md, "The runtime role";
 * docs/security.md I-29): a login that is a member of `gatehouse_runtime` may read and append to the
 * audit trail but not change it, and cannot switch its triggers off; and everything Gatehouse does
 * at run time works with it — registration, approval, sign-in, code exchange, refresh, key rotation,
 * the janitor and the sealer.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import pg from 'pg';
import { createAuditKeys } from '../../src/audit/audit-keys.ts';
import { verifyAuditTrail } from '../../src/audit/verify.ts';
import { runJanitor } from '../../src/app/janitor.ts';
import { openDatabase, type DatabaseHandle } from '../../src/db/database.ts';
import { createKeysService } from '../../src/keys/keys.service.ts';
import { rotateSigningKey } from '../../src/keys/rotation.ts';
import { createSecretBox } from '../../src/keys/secret-box.ts';
import { seed, startTestApp, type TestApp } from '../support/app.ts';
import { createTestDatabase, queryDatabase, type TestDatabase } from '../support/database.ts';
import { gatehouse, killAll } from '../support/gatehouse-process.ts';
import { registerClient, obtainTokens, tokenRequest } from '../support/oauth.ts';
import { createRuntimeLogin, type RuntimeLogin } from '../support/runtime-role.ts';

let database: TestDatabase;
let runtime: RuntimeLogin;
let runtimeUrl: string;

beforeAll(async () => {
  database = await createTestDatabase();
  runtime = await createRuntimeLogin();
  runtimeUrl = runtime.urlFor(database.url!);
});
afterAll(async () => {
  killAll();
  await database?.close();
  await runtime?.drop();
});

/** One statement as the runtime login, on a connection of its own. */
async function asRuntime(text: string, values: unknown[] = []) {
  const client = new pg.Client({ connectionString: runtimeUrl });
  await client.connect();
  try {
    return await client.query(text, values);
  } finally {
    await client.end();
  }
}

describe('what the runtime role may do to the audit trail', () => {
  test('it may append and read audit events', async () => {
    const inserted = await asRuntime(`INSERT INTO audit_events (event, actor) VALUES ('admin.signed_out', 'admin:runtime-test') RETURNING id`);
    expect(inserted.rowCount).toBe(1);
    expect((await asRuntime('SELECT count(*)::int AS n FROM audit_events')).rows[0]).toEqual({ n: expect.any(Number) });
    expect((await asRuntime('SELECT count(*)::int AS n FROM audit_checkpoints')).rows).toHaveLength(1);
  });

  test.each([
    ['UPDATE audit_events SET actor = $1', ['admin:someone-else'], /permission denied for table audit_events/],
    ['DELETE FROM audit_events', [], /permission denied for table audit_events/],
    ['TRUNCATE audit_events', [], /permission denied for table audit_events/],
    ['ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_or_delete', [], /must be owner of table audit_events/],
    ['ALTER TABLE audit_events DISABLE TRIGGER ALL', [], /must be owner of table audit_events/],
    ['DROP TRIGGER audit_events_stamp ON audit_events', [], /must be owner of (table|relation) audit_events/],
    ['UPDATE audit_checkpoints SET signature = $1', ['forged'], /permission denied for table audit_checkpoints/],
    ['DELETE FROM audit_checkpoints', [], /permission denied for table audit_checkpoints/],
    ['TRUNCATE audit_checkpoints', [], /permission denied for table audit_checkpoints/],
    ['ALTER TABLE audit_checkpoints DISABLE TRIGGER audit_checkpoints_no_update_or_delete', [], /must be owner of table audit_checkpoints/],
    // Triggers off for the session: a superuser's privilege only.
    ["SET session_replication_role = 'replica'", [], /permission denied to set parameter "session_replication_role"/],
    ["CREATE OR REPLACE FUNCTION audit_events_stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$", [], /must be owner of function audit_events_stamp|permission denied for schema public/],
    ["INSERT INTO kysely_migration (name, timestamp) VALUES ('9999_mine', 'now')", [], /permission denied for table kysely_migration/],
  ])('it may not: %s', async (statement, values, refusal) => {
    await expect(asRuntime(statement, values as unknown[])).rejects.toThrow(refusal);
  });

  test('as the owner it is not: the owner owns the tables, the role owns nothing', async () => {
    const owned = await queryDatabase<{ n: number }>(
      database.url!,
      `SELECT count(*)::int AS n FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE r.rolname IN ('gatehouse_runtime', $1)`,
      [runtime.name],
    );
    expect(owned).toEqual([{ n: 0 }]);
    const privileges = await queryDatabase<{ table_name: string; privileges: string[] }>(
      database.url!,
      `SELECT table_name, array_agg(privilege_type::text ORDER BY privilege_type) AS privileges FROM information_schema.role_table_grants
       WHERE grantee = 'gatehouse_runtime' AND table_name IN ('audit_events', 'audit_checkpoints', 'accounts', 'kysely_migration') GROUP BY table_name ORDER BY table_name`,
    );
    expect(privileges).toEqual([
      { table_name: 'accounts', privileges: ['DELETE', 'INSERT', 'SELECT', 'UPDATE'] },
      { table_name: 'audit_checkpoints', privileges: ['INSERT', 'SELECT'] },
      { table_name: 'audit_events', privileges: ['INSERT', 'SELECT'] },
      { table_name: 'kysely_migration', privileges: ['SELECT'] },
    ]);
  });
});

describe('Gatehouse connecting as the runtime role', () => {
  // A database of its own: the one above holds a row the runtime role inserted by hand (forged).
  let own: TestDatabase;
  let url: string;
  let handle: DatabaseHandle;
  let app: TestApp;
  const kek = () => Buffer.from('11'.repeat(32), 'hex');

  beforeAll(async () => {
    own = await createTestDatabase();
    url = runtime.urlFor(own.url!);
    handle = await openDatabase({ url, poolSize: 5, timeoutMs: 20_000 });
    app = await startTestApp({
      database: { ...handle, url, queries: [] },
      // The sealer's and the janitor's advisory locks connect as the runtime role too.
      env: { DATABASE_URL: url, GATEHOUSE_CLIENT_APPROVAL: 'manual' },
    });
  });
  afterAll(async () => {
    await app?.close();
    await handle?.close();
    await own?.close();
  });

  test('a full OAuth flow, key rotation, the janitor and the sealer work; the trail verifies', async () => {
    await seed(app);
    const client = await registerClient(app.issuer);
    await app.clients.approve(client.client_id, [{ resource: 'https://mcp.example.com', scopes: ['files:read'] }], 'admin@example.com');
    const { tokens } = await obtainTokens(app.issuer, { client });
    expect(tokens.status).toBe(200);
    const refreshed = await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: tokens.body.refresh_token, client_id: client.client_id });
    expect(refreshed.status).toBe(200);
    expect((await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: refreshed.body.refresh_token, client_id: client.client_id })).status).toBe(200);

    const keys = createKeysService({ db: app.db, secretBox: createSecretBox(kek()) });
    await rotateSigningKey({ keys, resources: app.resources, audit: app.audit }, { leadSeconds: 0, defaultTokenTtl: 600, actor: 'admin@example.com' });
    const janitor = await runJanitor({ db: app.db, databaseUrl: url, clients: app.clients, pendingClientTtl: 86400 });
    expect(janitor.ran).toBe(true);

    const sealed = await app.sealer.seal();
    expect(sealed).toMatchObject({ ran: true, invalid: [] });
    expect(sealed.ran && sealed.rows).toBeGreaterThanOrEqual(7);
    const report = await verifyAuditTrail(app.db, createAuditKeys(kek()), { unsealedAfter: 60 });
    expect(report.problems).toEqual([]);
    expect(report.unsealed).toBe(0);

    // And the operator's commands, connecting as the runtime role.
    const env = { DATABASE_URL: url, GATEHOUSE_KEY_ENCRYPTION_KEY: '11'.repeat(32) };
    const added = await gatehouse(['user', 'add', 'bob@example.com'], { env, input: 'a long enough password\n' });
    expect(added.code, added.stderr).toBe(0);
    const verified = await gatehouse(['audit', 'verify'], { env });
    expect(verified.code, verified.stderr).toBe(0);
    // The command sealed what it recorded.
    expect(verified.stdout).toMatch(/, 0 waiting for the next seal/);
  }, 120_000);
});
