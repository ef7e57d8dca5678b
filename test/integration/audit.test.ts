/**
 * The audit trail (issue 3): every security-relevant action leaves an append-only row saying who,
 * what, which client, user and resource, from where, in which request — and never a secret.
 */
import { sql } from 'kysely';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { verifyAuditChain } from '../../src/audit/audit-chain.ts';
import { inTransaction } from '../../src/db/unit-of-work.ts';
import { seed, startTestApp, TEST_PASSWORD, type TestApp } from '../support/app.ts';
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
  for (const secret of [tokens.body.refresh_token, refreshed.body.refresh_token, tokens.body.access_token, code, verifier, client.client_secret, TEST_PASSWORD, 'wrong password']) {
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

describe('the hash chain', () => {
  test('every row points at the one before it, and the chain verifies', async () => {
    const rows = await app.db.selectFrom('audit_events').select(['id', 'prev_hash', 'hash']).orderBy('id').execute();
    expect(rows.length).toBeGreaterThan(5);
    expect(rows[0]!.prev_hash).toBe('genesis');
    for (let i = 1; i < rows.length; i++) expect(rows[i]!.prev_hash).toBe(rows[i - 1]!.hash);
    for (const row of rows) expect(row.hash).toMatch(/^[0-9a-f]{64}$/);
    const report = await verifyAuditChain(app.db);
    expect(report).toEqual({ events: rows.length, lastHash: rows.at(-1)!.hash, problems: [] });
  });

  test('concurrent writers from separate transactions still make one unbroken chain', async () => {
    await Promise.all(
      Array.from({ length: 20 }, (_, i) => inTransaction(app.db, () => app.audit.record({ event: 'admin.signed_out', actor: `admin:concurrent-${i}` }))),
    );
    expect((await verifyAuditChain(app.db)).problems).toEqual([]);
  });

  test('an edited, a removed and a reordered row are each detected', async () => {
    const tampered = await startTestApp();
    try {
      for (let i = 0; i < 5; i++) await tampered.audit.record({ event: 'admin.signed_out', actor: `admin:${i}` });
      const ids = (await tampered.db.selectFrom('audit_events').select('id').orderBy('id').execute()).map((r) => String(r.id));
      // Someone with the database's owner rights goes around the append-only trigger.
      await sql`ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_or_delete`.execute(tampered.db);
      await sql`UPDATE audit_events SET actor = 'admin:someone-else' WHERE id = ${ids[1]}::bigint`.execute(tampered.db);
      await sql`DELETE FROM audit_events WHERE id = ${ids[3]}::bigint`.execute(tampered.db);
      await sql`ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_update_or_delete`.execute(tampered.db);
      const report = await verifyAuditChain(tampered.db);
      expect(report.problems).toEqual([
        { id: ids[1], problem: expect.stringMatching(/content does not match its hash: the row was edited/) },
        { id: ids[4], problem: expect.stringMatching(/prev_hash does not match the row before it: a row was removed/) },
      ]);
    } finally {
      await tampered.close();
    }
  });
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
    const rows = await streaming.db.selectFrom('audit_events').select(['id', 'hash', 'event']).orderBy('id').execute();
    expect(lines.map((l) => [l.id, l.hash])).toEqual(rows.map((r) => [String(r.id), r.hash]));
    const issued = lines.at(-1)!;
    expect(Object.keys(issued).sort()).toEqual(
      ['type', 'id', 'occurred_at', 'event', 'actor', 'client_id', 'account_id', 'resource', 'source_ip', 'user_agent', 'request_id', 'details', 'hash'].sort(),
    );
    expect(issued).toMatchObject({ type: 'gatehouse.audit', client_id: client.client_id, resource: RESOURCE });
    expect(JSON.stringify(lines)).not.toContain(tokens.body.refresh_token);
    expect(JSON.stringify(lines)).not.toContain(code);
  } finally {
    await streaming.close();
  }
});
