/**
 * Refresh tokens: rotation on every use, reuse detection that revokes the whole grant
 * (OAuth 2.1 §4.3.1, RFC 9700 §4.14.2), exactly one winner when two refreshes race, and no token
 * burnt by a request that failed for a reason that was not the client's fault.
 */
import { sql } from 'kysely';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { seed, startTestApp, type TestApp } from '../support/app.ts';
import { obtainTokens, tokenRequest } from '../support/oauth.ts';
import { testDatabaseKind } from '../support/database.ts';

let app: TestApp;
const RESOURCE = 'https://mcp.example.com';

beforeAll(async () => {
  app = await startTestApp();
  await seed(app);
});
afterAll(() => app?.close());

function refresh(clientId: string, refreshToken: string, extra: Record<string, string | string[]> = {}) {
  return tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: refreshToken, client_id: clientId, ...extra });
}

describe('rotation', () => {
  test('every refresh returns a new refresh token and a fresh access token for the same resource', async () => {
    const { client, tokens } = await obtainTokens(app.issuer);
    const r1 = await refresh(client.client_id, tokens.body.refresh_token, { resource: RESOURCE });
    expect(r1.status).toBe(200);
    expect(r1.body.refresh_token).toBeTruthy();
    expect(r1.body.refresh_token).not.toBe(tokens.body.refresh_token);
    expect(decodeJwt(r1.body.access_token).aud).toBe(RESOURCE);
    // resource is optional on refresh: the grant's resource is used.
    const r2 = await refresh(client.client_id, r1.body.refresh_token);
    expect(r2.status).toBe(200);
    expect(decodeJwt(r2.body.access_token).aud).toBe(RESOURCE);
    expect(decodeJwt(r2.body.access_token).scope).toBe('files:read');
  });

  test('a refresh for another resource than the grant is invalid_target and burns nothing', async () => {
    const { client, tokens } = await obtainTokens(app.issuer);
    const wrong = await refresh(client.client_id, tokens.body.refresh_token, { resource: 'https://other.example.com' });
    expect(wrong.status).toBe(400);
    expect(wrong.body.error).toBe('invalid_target');
    const ok = await refresh(client.client_id, tokens.body.refresh_token);
    expect(ok.status).toBe(200);
  });

  test('a refresh token only works for the client it was issued to', async () => {
    const { tokens } = await obtainTokens(app.issuer);
    const other = await obtainTokens(app.issuer);
    const r = await refresh(other.client.client_id, tokens.body.refresh_token);
    expect(r.status).toBe(400);
    expect(r.body.error).toBe('invalid_grant');
  });

  test('refresh tokens are stored only as digests', async () => {
    const { tokens } = await obtainTokens(app.issuer);
    const rows = await app.db.selectFrom('oidc_payloads').select(['id', sql<string>`payload::text`.as('payload')]).execute();
    for (const row of rows) {
      expect(row.id).not.toBe(tokens.body.refresh_token);
      expect(row.payload).not.toContain(tokens.body.refresh_token);
    }
  });
});

describe('reuse detection', () => {
  test('replaying a rotated refresh token revokes every token descended from it', async () => {
    const { client, tokens } = await obtainTokens(app.issuer);
    const first = tokens.body.refresh_token as string;
    const second = (await refresh(client.client_id, first)).body.refresh_token as string;
    const third = (await refresh(client.client_id, second)).body.refresh_token as string;
    expect(third).toBeTruthy();

    const replay = await refresh(client.client_id, first);
    expect(replay.status).toBe(400);
    expect(replay.body.error).toBe('invalid_grant');

    const newest = await refresh(client.client_id, third);
    expect(newest.status).toBe(400);
    expect(newest.body.error).toBe('invalid_grant');
    const middle = await refresh(client.client_id, second);
    expect(middle.body.error).toBe('invalid_grant');
  });

  test('concurrent refreshes of one token: one rotation, at most one grace retry, never two live chains', async () => {
    const { client, tokens } = await obtainTokens(app.issuer);
    const results = await Promise.all([0, 1, 2].map(() => refresh(client.client_id, tokens.body.refresh_token)));
    const ok = results.filter((r) => r.status === 200);
    // One wins the rotation. A loser that read the token before the winner's commit loses at the
    // conditional consume; one that read it after is, to Gatehouse, a retry of a lost answer
    // (rotation grace, the same client, its successor unused): it gets a successor that replaces
    // the winner's. A third presentation after that is reuse.
    expect(ok.length).toBeGreaterThanOrEqual(1);
    expect(ok.length).toBeLessThanOrEqual(2);
    for (const r of results.filter((x) => x.status !== 200)) {
      expect(r.status).toBe(400);
      expect(r.body.error).toBe('invalid_grant');
    }
    const events = await app.db.selectFrom('audit_events').select('event').where('client_id', '=', client.client_id).where('event', 'like', 'token.refreshed%').execute();
    expect(events.filter((e) => e.event === 'token.refreshed')).toHaveLength(1);
    expect(events.filter((e) => e.event === 'token.refreshed_within_grace')).toHaveLength(ok.length - 1);
    // Never two live chains: of the refresh tokens handed out, at most one still refreshes.
    const successors = await app.db.selectFrom('oidc_payloads').select('id').where('model', '=', 'RefreshToken').where('client_id', '=', client.client_id).where('consumed_at', 'is', null).execute();
    expect(successors.length).toBeLessThanOrEqual(1);
    const alive = [];
    for (const r of ok) if ((await refresh(client.client_id, r.body.refresh_token)).status === 200) alive.push(r);
    expect(alive.length).toBeLessThanOrEqual(1);
  });
});

describe('failures that are not the client\'s fault', () => {
  test.skipIf(testDatabaseKind() === 'pglite')('a database error while storing the new refresh token does not burn the old one', async () => {
    const { client, tokens } = await obtainTokens(app.issuer);
    await sql`create function gatehouse_test_fail() returns trigger language plpgsql as $$ begin raise exception 'simulated outage'; end $$`.execute(app.db);
    await sql`create trigger gatehouse_test_fail before insert on oidc_payloads for each row when (new.model = 'RefreshToken') execute function gatehouse_test_fail()`.execute(app.db);
    try {
      const failed = await refresh(client.client_id, tokens.body.refresh_token);
      expect(failed.status).toBe(500);
      expect(failed.body.error).toBe('server_error');
    } finally {
      await sql`drop trigger gatehouse_test_fail on oidc_payloads`.execute(app.db);
      await sql`drop function gatehouse_test_fail()`.execute(app.db);
    }
    const retried = await refresh(client.client_id, tokens.body.refresh_token);
    expect(retried.status).toBe(200);
    // And the retry did not count as a replay: its successor works.
    expect((await refresh(client.client_id, retried.body.refresh_token)).status).toBe(200);
  });
});

describe('lifetimes', () => {
  test('the refresh token outlives the browser session and the access token', async () => {
    const { client, tokens } = await obtainTokens(app.issuer);
    // Sign-in sessions are not needed for refresh: delete them all.
    await app.db.deleteFrom('oidc_payloads').where('model', '=', 'Session').execute();
    const r = await refresh(client.client_id, tokens.body.refresh_token);
    expect(r.status).toBe(200);
    const row = await app.db
      .selectFrom('oidc_payloads')
      .select(['expires_at'])
      .where('model', '=', 'RefreshToken')
      .where('consumed_at', 'is', null)
      .orderBy('created_at', 'desc')
      .executeTakeFirstOrThrow();
    const days = (row.expires_at!.getTime() - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(29);
    expect(days).toBeLessThanOrEqual(30.01);
  });
});
