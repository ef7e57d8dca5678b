/**
 * The audit trail (issue 3): every security-relevant action leaves an append-only row saying who,
 * what, which client, user and resource, from where, in which request — and never a secret.
 */
import { sql } from 'kysely';
import pg from 'pg';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createAuditKeys } from '../../src/audit/audit-keys.ts';
import { computeMac } from '../../src/audit/audit-mac.ts';
import { rowLeaf } from '../../src/audit/audit-row.ts';
import { createAuditRepository } from '../../src/audit/audit.repository.ts';
import { decodeIds, encodeIds, signBody } from '../../src/audit/checkpoint.ts';
import { merkleRoot } from '../../src/audit/merkle.ts';
import { verifyAuditTrail } from '../../src/audit/verify.ts';
import { inTransaction } from '../../src/db/unit-of-work.ts';
import { seed, startTestApp, TEST_PASSWORD, type TestApp } from '../support/app.ts';
import { queryDatabase } from '../support/database.ts';
import { authorizationUrl, authorizeForCode, authorizeInBrowser, exchangeCode, pkcePair, registerClient, tokenRequest } from '../support/oauth.ts';

const RESOURCE = 'https://mcp.example.com';
let app: TestApp;

beforeAll(async () => {
  app = await startTestApp({ env: { GATEHOUSE_CLIENT_APPROVAL: 'manual' } });
  await seed(app, { uri: RESOURCE });
});
afterAll(() => app?.close());

async function events(clientId: string) {
  return app.db.selectFrom('audit_events').selectAll().where('client_id', '=', clientId).orderBy('id').execute();
}

test('one client\'s life, from registration to reuse detection, is in the trail, in order, without secrets', async () => {
  const registration = await request(app.issuer)
    .post('/register')
    .set('User-Agent', 'AuditAgent/2.0')
    .send({ client_name: 'Audited', redirect_uris: ['http://127.0.0.1:53682/callback'], token_endpoint_auth_method: 'client_secret_post' });
  expect(registration.status).toBe(201);
  const client = registration.body;
  await app.clients.approve(client.client_id, [{ resource: RESOURCE, scopes: ['files:read'] }], 'admin@example.com');

  // A failed sign-in, then the real one, consent, code exchange, refresh, replay, revocation.
  const failed = await authorizeInBrowser(
    authorizationUrl(app.issuer, { client_id: client.client_id, response_type: 'code', redirect_uri: client.redirect_uris[0], code_challenge: pkcePair().challenge, code_challenge_method: 'S256', resource: RESOURCE }),
    { password: 'wrong password' },
  ).catch((error: Error) => error);
  expect(failed).toBeInstanceOf(Error);
  const { code, verifier } = await authorizeForCode(app.issuer, client, { resource: RESOURCE });
  const auth = { client_id: client.client_id, client_secret: client.client_secret };
  const tokens = await tokenRequest(app.issuer, { grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: client.redirect_uris[0], resource: RESOURCE, ...auth });
  expect(tokens.status).toBe(200);
  const refreshed = await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: tokens.body.refresh_token, ...auth });
  expect(refreshed.status).toBe(200);
  // Presented again at once, the rotated token is a retry within the rotation grace; a third time, reuse.
  const retried = await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: tokens.body.refresh_token, ...auth });
  expect(retried.status).toBe(200);
  const replay = await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: tokens.body.refresh_token, ...auth });
  expect(replay.status).toBe(400);
  const revoked = await request(app.issuer).post('/revoke').type('form').send({ token: refreshed.body.refresh_token, ...auth });
  expect(revoked.status).toBe(200);
  await app.clients.suspend(client.client_id, 'admin@example.com', 'done');

  const rows = await events(client.client_id);
  expect(rows.map((r) => r.event)).toEqual([
    'client.registered',
    'client.approved',
    'user.sign_in_failed',
    'user.sign_in_succeeded',
    'consent.granted',
    'token.issued',
    'token.refreshed',
    'token.refreshed_within_grace',
    'token.reuse_detected',
    'token.revoked',
    'client.suspended',
  ]);
  const byEvent = Object.fromEntries(rows.map((r) => [r.event, r]));
  expect(byEvent['client.registered']).toMatchObject({ user_agent: 'AuditAgent/2.0', actor: `client:${client.client_id}`, details: { status: 'pending', client_name: 'Audited' } });
  expect(byEvent['client.registered']!.source_ip).toMatch(/127\.0\.0\.1/);
  expect(byEvent['client.registered']!.request_id).toBe(registration.headers['x-request-id']);
  expect(byEvent['client.approved']).toMatchObject({ actor: 'admin@example.com', details: { ceiling: { [RESOURCE]: ['files:read'] } } });
  const account = await app.accounts.findActiveById(byEvent['token.issued']!.account_id!);
  expect(account?.email).toBe('alice@example.com');
  expect(byEvent['token.issued']).toMatchObject({ resource: RESOURCE, details: { grant_type: 'authorization_code', scope: 'files:read' } });
  expect(byEvent['consent.granted']).toMatchObject({ resource: RESOURCE, account_id: account!.id });
  expect(byEvent['token.reuse_detected']!.details).toMatchObject({ grant_type: 'refresh_token' });
  for (const row of rows) expect(row.request_id === null || /^[0-9a-f-]{36}$/.test(row.request_id)).toBe(true);

  const everything = JSON.stringify(await app.db.selectFrom('audit_events').selectAll().execute());
  for (const secret of [tokens.body.refresh_token, refreshed.body.refresh_token, retried.body.refresh_token, tokens.body.access_token, code, verifier, client.client_secret, TEST_PASSWORD, 'wrong password']) {
    expect(everything).not.toContain(secret);
  }
});

test('the table is append-only: updates, deletes and truncation are refused', async () => {
  await app.audit.record({ event: 'admin.signed_out', actor: 'admin@example.com' });
  await expect(sql`update audit_events set actor = 'someone else'`.execute(app.db)).rejects.toThrow(/append-only/);
  await expect(sql`delete from audit_events`.execute(app.db)).rejects.toThrow(/append-only/);
  await expect(sql`truncate audit_events`.execute(app.db)).rejects.toThrow(/append-only/);
  const count = await app.db.selectFrom('audit_events').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow();
  expect(Number(count.n)).toBeGreaterThan(0);
});

test('listing is newest first and filterable', async () => {
  const newest = await app.audit.list({ limit: 3 });
  expect(newest).toHaveLength(3);
  expect(Number(newest[0]!.id)).toBeGreaterThan(Number(newest[1]!.id));
  const refreshes = await app.audit.list({ event: 'token.refreshed' });
  expect(refreshes.length).toBeGreaterThan(0);
  expect(refreshes.every((e) => e.event === 'token.refreshed')).toBe(true);
});

describe('sealing: rows without a lock, checkpoints afterwards', () => {
  const keys = () => createAuditKeys(app.config.keyEncryptionKey, app.config.previousKeyEncryptionKeys);
  const verify = () => verifyAuditTrail(app.db, keys(), { unsealedAfter: 60 });

  test('every row carries a MAC and its transaction id, and no chain hash', async () => {
    const rows = await app.db.selectFrom('audit_events').select(['id', 'txid', 'mac', 'prev_hash', 'hash']).orderBy('id').execute();
    expect(rows.length).toBeGreaterThan(5);
    const keyId = keys().mac.id;
    for (const row of rows) {
      expect(row.mac).toMatch(new RegExp(`^${keyId}\\.[A-Za-z0-9_-]{22}\\.[A-Za-z0-9_-]{43}$`));
      expect(row.txid).toMatch(/^\d+$/);
      expect([row.prev_hash, row.hash]).toEqual([null, null]);
    }
    expect(new Set(rows.map((r) => r.mac)).size).toBe(rows.length);
  });

  test('the sealer seals every committed row in one signed checkpoint; verification finds the trail intact', async () => {
    const before = await verify();
    expect(before.problems).toEqual([]);
    expect(before.unsealed).toBe(before.events);
    const outcome = await app.sealer.seal();
    expect(outcome).toMatchObject({ ran: true, invalid: [] });
    if (!outcome.ran) throw new Error('not sealed');
    expect(outcome.rows).toBe(before.events);
    const [checkpoint] = outcome.checkpoints;
    expect(checkpoint).toMatchObject({ seq: 1n, epoch: 1, prevDigest: 'genesis', keyId: keys().signer.keyId });
    // Nothing new: nothing to seal, no empty checkpoint.
    expect(await app.sealer.seal()).toMatchObject({ ran: true, checkpoints: [] });
    const after = await verify();
    expect(after).toMatchObject({ events: before.events, sealed: before.events, unsealed: 0, checkpoints: 1, problems: [] });
    expect(after.head?.digest).toBe(checkpoint!.digest);
  });

  test('concurrent writers from separate connections never wait for each other', async () => {
    // The old chain trigger took one advisory lock per transaction: the second insert below would
    // have waited for the first transaction to end. Each connection gives up after 2 s of waiting.
    const url = app.database.url!;
    const clients = await Promise.all(
      Array.from({ length: 8 }, async () => {
        const c = new pg.Client({ connectionString: url, statement_timeout: 2000 });
        await c.connect();
        await c.query('BEGIN');
        return c;
      }),
    );
    try {
      const started = performance.now();
      await Promise.all(clients.map((c, i) => c.query(`INSERT INTO audit_events (event, actor) VALUES ('admin.signed_out', $1)`, [`admin:held-${i}`])));
      // And the application's own writer, while all eight hold their rows uncommitted.
      await Promise.all(Array.from({ length: 8 }, (_, i) => inTransaction(app.db, () => app.audit.record({ event: 'admin.signed_out', actor: `admin:concurrent-${i}` }))));
      expect(performance.now() - started).toBeLessThan(2000);
    } finally {
      await Promise.all(clients.map(async (c) => c.query('ROLLBACK').finally(() => c.end())));
    }
    expect((await verify()).problems).toEqual([]);
  });

  test('a transaction still open holds sealing back at its horizon; once it ends, its row is sealed first, whatever its id', async () => {
    await app.sealer.seal();
    const held = new pg.Client({ connectionString: app.database.url! });
    await held.connect();
    try {
      await held.query('BEGIN');
      await held.query('SELECT pg_current_xact_id()'); // it has a transaction id from now on
      // Committed meanwhile, with a later txid (and a lower id) than the open transaction's row.
      await app.audit.record({ event: 'admin.signed_out', actor: 'admin:while-one-is-open' });
      const later = await app.db.selectFrom('audit_events').select('id').where('actor', '=', 'admin:while-one-is-open').executeTakeFirstOrThrow();
      const [{ id: heldId }] = (await held.query<{ id: string }>(`INSERT INTO audit_events (event, actor) VALUES ('admin.signed_out', 'admin:held') RETURNING id::text AS id`)).rows as [{ id: string }];
      expect(BigInt(heldId)).toBeGreaterThan(BigInt(later.id));
      // Sealing the committed row now could put it before one that commits later: it waits.
      expect(await app.sealer.seal()).toMatchObject({ ran: true, checkpoints: [] });
      expect((await verify()).unsealed).toBe(1);
      await held.query('COMMIT');
      const outcome = await app.sealer.seal();
      if (!outcome.ran) throw new Error('not sealed');
      expect(outcome.checkpoints.flatMap((cp) => cp.ids.map(String))).toEqual([heldId, String(later.id)]);
      // The held row was written without the application: it is sealed, and named as forged.
      expect(outcome.invalid.map(String)).toEqual([heldId]);
      const report = await verify();
      expect(report.problems).toEqual([{ subject: 'event', id: heldId, problem: expect.stringMatching(/^forged: checkpoint \d+ recorded that its MAC did not verify.*it has no MAC/) }]);
    } finally {
      await held.end();
    }
  });
});

test('rows left unsealed past the sealing delay are reported: sealing has stalled', async () => {
  const stalled = await startTestApp();
  try {
    await stalled.audit.record({ event: 'admin.signed_out', actor: 'admin:nobody-seals' });
    const keys = createAuditKeys(stalled.config.keyEncryptionKey);
    expect((await verifyAuditTrail(stalled.db, keys, { unsealedAfter: 1 })).problems).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const [row] = await stalled.db.selectFrom('audit_events').select('id').execute();
    expect((await verifyAuditTrail(stalled.db, keys, { unsealedAfter: 1 })).problems).toEqual([
      { subject: 'event', id: String(row!.id), problem: expect.stringMatching(/^not sealed, more than 1 s after it was written: sealing has stalled \(a long-running transaction/) },
    ]);
    await stalled.sealer.seal();
    expect((await verifyAuditTrail(stalled.db, keys, { unsealedAfter: 1 })).problems).toEqual([]);
  } finally {
    await stalled.close();
  }
});

test('a database restored into another cluster (its transaction ids behind the checkpoints\') starts a new epoch, and nothing is left unsealed', async () => {
  const restored = await startTestApp();
  try {
    const keys = createAuditKeys(restored.config.keyEncryptionKey);
    const repo = createAuditRepository(restored.db);
    const url = restored.database.url!;
    await restored.audit.record({ event: 'admin.signed_out', actor: 'admin:before' });
    await restored.sealer.seal();
    // What the dump brought from the old cluster, whose counter was far ahead: rows it sealed in a
    // checkpoint with a horizon far above this cluster's, and one it had not sealed yet.
    const [{ now }] = (await queryDatabase<{ now: string }>(url, 'SELECT pg_current_xact_id()::text AS now')) as [{ now: string }];
    const far = BigInt(now) + 1_000_000n;
    const fields = { event: 'admin.signed_out', client_id: null, account_id: null, resource: null, source_ip: null, user_agent: null, request_id: null, details: {} };
    const insertOld = async (actor: string, txid: bigint) => {
      const mac = computeMac(keys, { ...fields, actor });
      await queryDatabase(url, `INSERT INTO audit_events (id, txid, event, actor, mac) VALUES (nextval('audit_events_id_seq'), $1::xid8, 'admin.signed_out', $2, $3)`, [String(txid), actor, mac]);
    };
    await queryDatabase(url, 'ALTER TABLE audit_events DISABLE TRIGGER audit_events_stamp');
    await insertOld('admin:old-cluster-sealed', far);
    await insertOld('admin:old-cluster-unsealed', far + 10n);
    await queryDatabase(url, 'ALTER TABLE audit_events ENABLE TRIGGER audit_events_stamp');
    const last = (await repo.lastCheckpoint())!;
    const [oldSealed] = (await repo.rowsByIds([last.lastId + 1n]));
    const leaves = [rowLeaf(oldSealed!)];
    const body = { seq: last.seq + 1n, epoch: 1, floorId: 0n, horizon: far + 5n, lastTxid: far, lastId: oldSealed!.id, ids: [oldSealed!.id], invalid: [], root: merkleRoot(leaves).toString('hex'), prevDigest: last.digest, sealedAt: new Date(), keyId: keys.signer.keyId };
    await repo.insertCheckpoint(restored.db, { ...body, leaves, ...signBody(keys, body) }, encodeIds(body.ids));
    // This cluster's rows get transaction ids below every position the old cluster sealed.
    await restored.audit.record({ event: 'admin.signed_out', actor: 'admin:after-the-restore' });

    const outcome = await restored.sealer.seal();
    if (!outcome.ran) throw new Error('not sealed');
    const newEpoch = outcome.checkpoints[0]!;
    expect(newEpoch).toMatchObject({ epoch: 2, lastTxid: null });
    expect(newEpoch.floorId).toBe(newEpoch.lastId);
    const actors = async (ids: bigint[]) => (await repo.rowsByIds(ids)).map((r) => r.actor).sort();
    expect(await actors(newEpoch.ids)).toEqual(['admin:after-the-restore', 'admin:old-cluster-unsealed']);
    // From then on, the new epoch seals as usual.
    await restored.audit.record({ event: 'admin.signed_out', actor: 'admin:later' });
    const next = await restored.sealer.seal();
    expect(next.ran && next.checkpoints.map((cp) => cp.epoch)).toEqual([2]);
    const report = await verifyAuditTrail(restored.db, keys, { unsealedAfter: 60 });
    expect(report.problems).toEqual([]);
    expect(report).toMatchObject({ unsealed: 0, checkpoints: 4 });
  } finally {
    await restored.close();
  }
});

test('committed events stream as JSON lines with the documented fields; rolled-back work never does', async () => {
  const lines: Array<Record<string, unknown>> = [];
  const streaming = await startTestApp({ env: { GATEHOUSE_CLIENT_APPROVAL: 'automatic' }, testOnly: { auditSink: { write: (e) => void lines.push(e), close: async () => {} } } });
  try {
    await seed(streaming, { uri: RESOURCE });
    const client = await registerClient(streaming.issuer);
    const { code, verifier } = await authorizeForCode(streaming.issuer, client, { resource: RESOURCE });
    // A token request that fails (wrong verifier) rolls back: no event, no line.
    expect((await exchangeCode(streaming.issuer, client, code, `${verifier}x`, RESOURCE)).status).toBe(400);
    const tokens = await exchangeCode(streaming.issuer, client, code, verifier, RESOURCE);
    expect(tokens.status).toBe(200);
    expect(lines.map((l) => l.event)).toEqual(['client.registered', 'user.sign_in_succeeded', 'consent.granted', 'token.issued']);
    const rows = await streaming.db.selectFrom('audit_events').select(['id', 'txid', 'mac', 'event']).orderBy('id').execute();
    expect(lines.map((l) => [l.id, l.txid, l.mac])).toEqual(rows.map((r) => [String(r.id), r.txid, r.mac]));
    const issued = lines.at(-1)!;
    expect(Object.keys(issued).sort()).toEqual(
      ['type', 'id', 'txid', 'occurred_at', 'event', 'actor', 'client_id', 'account_id', 'resource', 'source_ip', 'user_agent', 'request_id', 'details', 'mac'].sort(),
    );
    expect(issued).toMatchObject({ type: 'gatehouse.audit', client_id: client.client_id, resource: RESOURCE });
    expect(JSON.stringify(lines)).not.toContain(tokens.body.refresh_token);
    expect(JSON.stringify(lines)).not.toContain(code);

    // Sealing writes the checkpoint to the sink too, once it is committed: a copy outside the database.
    lines.length = 0;
    await streaming.sealer.seal();
    expect(lines).toEqual([
      expect.objectContaining({ type: 'gatehouse.audit.checkpoint', seq: '1', count: 4, prev_digest: 'genesis', invalid: [] }),
    ]);
    const checkpoint = lines[0]!;
    expect(decodeIds(String(checkpoint.ids)).map(String)).toEqual(rows.map((r) => String(r.id)));
    expect(Object.keys(checkpoint).sort()).toEqual(
      ['type', 'seq', 'epoch', 'floor_id', 'horizon', 'last_txid', 'last_id', 'count', 'ids', 'invalid', 'root', 'prev_digest', 'sealed_at', 'key_id', 'digest', 'signature', 'public_key'].sort(),
    );
    const stored = await streaming.db.selectFrom('audit_checkpoints').select(['digest', 'signature']).executeTakeFirstOrThrow();
    expect([checkpoint.digest, checkpoint.signature]).toEqual([stored.digest, stored.signature]);
  } finally {
    await streaming.close();
  }
});
