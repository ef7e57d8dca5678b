/**
 * Rotation grace (issue 14 §1, docs/security.md I-32): a client that lost the answer to a refresh
 * presents the token it has just rotated once more, within GATEHOUSE_REFRESH_TOKEN_REUSE_GRACE, and
 * gets a working answer; afterwards exactly one chain is alive. Outside the window, from another
 * client, a second time, or once the successor was used: reuse detection, the grant revoked.
 */
import { connect } from 'node:net';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { digestId } from '../../src/oidc/adapter.ts';
import { seed, startTestApp, type TestApp } from '../support/app.ts';
import { obtainTokens, registerClient, tokenRequest } from '../support/oauth.ts';

let app: TestApp;
let strict: TestApp;

beforeAll(async () => {
  [app, strict] = await Promise.all([startTestApp(), startTestApp({ env: { GATEHOUSE_REFRESH_TOKEN_REUSE_GRACE: '0' } })]);
  await Promise.all([seed(app), seed(strict)]);
});
afterAll(async () => {
  await app?.close();
  await strict?.close();
});

const refresh = (on: TestApp, clientId: string, refreshToken: string) => tokenRequest(on.issuer, { grant_type: 'refresh_token', refresh_token: refreshToken, client_id: clientId });

async function events(on: TestApp, clientId: string): Promise<string[]> {
  const rows = await on.db.selectFrom('audit_events').select('event').where('client_id', '=', clientId).where('event', 'like', 'token.%').orderBy('id').execute();
  return rows.map((r) => r.event);
}

/** The grant's refresh tokens that still refresh (unconsumed and unexpired). */
async function liveRefreshTokens(on: TestApp, clientId: string): Promise<number> {
  const rows = await on.db
    .selectFrom('oidc_payloads')
    .select('id')
    .where('model', '=', 'RefreshToken')
    .where('client_id', '=', clientId)
    .where('consumed_at', 'is', null)
    .execute();
  return rows.length;
}

async function grantExists(on: TestApp, clientId: string): Promise<boolean> {
  const row = await on.db.selectFrom('oidc_payloads').select('id').where('model', '=', 'Grant').where('client_id', '=', clientId).executeTakeFirst();
  return Boolean(row);
}

describe('within the window, the same client', () => {
  test('presenting the token it has just rotated gets a new successor that replaces the undelivered one', async () => {
    const { client, tokens } = await obtainTokens(app.issuer);
    const t0 = tokens.body.refresh_token as string;
    const lost = await refresh(app, client.client_id, t0);
    expect(lost.status).toBe(200);
    // The client never saw `lost`: it retries with what it has.
    const retried = await refresh(app, client.client_id, t0);
    expect(retried.status).toBe(200);
    expect(retried.body.refresh_token).toBeTruthy();
    expect(retried.body.refresh_token).not.toBe(lost.body.refresh_token);
    expect(retried.body.access_token).toBeTruthy();
    expect(await liveRefreshTokens(app, client.client_id)).toBe(1);
    // The chain goes on from the retry's successor.
    const next = await refresh(app, client.client_id, retried.body.refresh_token);
    expect(next.status).toBe(200);
    expect(await liveRefreshTokens(app, client.client_id)).toBe(1);
    expect(await events(app, client.client_id)).toEqual(['token.issued', 'token.refreshed', 'token.refreshed_within_grace', 'token.refreshed']);
    const [row] = await app.db.selectFrom('audit_events').select('details').where('client_id', '=', client.client_id).where('event', '=', 'token.refreshed_within_grace').execute();
    expect(row!.details).toMatchObject({ grant_type: 'refresh_token', grant_id: expect.any(String) });
  });

  test('the replaced successor, presented later, is reuse: the whole grant is revoked', async () => {
    const { client, tokens } = await obtainTokens(app.issuer);
    const t0 = tokens.body.refresh_token as string;
    const s1 = (await refresh(app, client.client_id, t0)).body.refresh_token as string;
    const s2 = (await refresh(app, client.client_id, t0)).body.refresh_token as string;
    // Someone did get s1 after all (a thief who also held t0, or the real client): it is dead, and
    // presenting it kills the chain the retry started.
    const late = await refresh(app, client.client_id, s1);
    expect(late.status).toBe(400);
    expect(late.body.error).toBe('invalid_grant');
    expect((await refresh(app, client.client_id, s2)).body.error).toBe('invalid_grant');
    expect(await grantExists(app, client.client_id)).toBe(false);
    expect(await events(app, client.client_id)).toEqual(['token.issued', 'token.refreshed', 'token.refreshed_within_grace', 'token.reuse_detected']);
  });

  test('a second retry of the same token is reuse', async () => {
    const { client, tokens } = await obtainTokens(app.issuer);
    const t0 = tokens.body.refresh_token as string;
    expect((await refresh(app, client.client_id, t0)).status).toBe(200);
    const s2 = (await refresh(app, client.client_id, t0)).body.refresh_token as string;
    const third = await refresh(app, client.client_id, t0);
    expect(third.status).toBe(400);
    expect(third.body.error).toBe('invalid_grant');
    expect((await refresh(app, client.client_id, s2)).body.error).toBe('invalid_grant');
    expect(await grantExists(app, client.client_id)).toBe(false);
  });

  test('once the successor was used, the old token is reuse (the client did get the answer)', async () => {
    const { client, tokens } = await obtainTokens(app.issuer);
    const t0 = tokens.body.refresh_token as string;
    const s1 = (await refresh(app, client.client_id, t0)).body.refresh_token as string;
    const s2 = (await refresh(app, client.client_id, s1)).body.refresh_token as string;
    const replay = await refresh(app, client.client_id, t0);
    expect(replay.status).toBe(400);
    expect(replay.body.error).toBe('invalid_grant');
    expect((await refresh(app, client.client_id, s2)).body.error).toBe('invalid_grant');
  });
});

describe('no grace', () => {
  test('outside the window: reuse, the grant revoked', async () => {
    const { client, tokens } = await obtainTokens(app.issuer);
    const t0 = tokens.body.refresh_token as string;
    const s1 = (await refresh(app, client.client_id, t0)).body.refresh_token as string;
    // Rotated 61 seconds ago (the window is 60 s by default).
    await app.db
      .updateTable('oidc_payloads')
      .set({ consumed_at: sql<Date>`now() - interval '61 seconds'` })
      .where('model', '=', 'RefreshToken')
      .where('id', '=', digestId(t0))
      .execute();
    const late = await refresh(app, client.client_id, t0);
    expect(late.status).toBe(400);
    expect(late.body.error).toBe('invalid_grant');
    expect((await refresh(app, client.client_id, s1)).body.error).toBe('invalid_grant');
    expect(await events(app, client.client_id)).toEqual(['token.issued', 'token.refreshed', 'token.reuse_detected']);
  });

  test('another client presenting a used token: reuse, the grant revoked (not just "client mismatch")', async () => {
    const { client, tokens } = await obtainTokens(app.issuer);
    const other = await registerClient(app.issuer);
    const t0 = tokens.body.refresh_token as string;
    const s1 = (await refresh(app, client.client_id, t0)).body.refresh_token as string;
    const stolen = await refresh(app, other.client_id, t0);
    expect(stolen.status).toBe(400);
    expect(stolen.body.error).toBe('invalid_grant');
    expect((await refresh(app, client.client_id, s1)).body.error).toBe('invalid_grant');
    const [row] = await app.db.selectFrom('audit_events').select(['details', 'account_id']).where('client_id', '=', other.client_id).where('event', '=', 'token.reuse_detected').execute();
    expect(row?.details).toMatchObject({ presented_by: expect.stringContaining('another client'), revoked: 'the whole grant' });
    expect(row?.account_id).toBeTruthy();
  });

  test('an unused token from another client is refused and revokes nothing', async () => {
    const { client, tokens } = await obtainTokens(app.issuer);
    const other = await registerClient(app.issuer);
    const wrong = await refresh(app, other.client_id, tokens.body.refresh_token);
    expect(wrong.body.error).toBe('invalid_grant');
    expect((await refresh(app, client.client_id, tokens.body.refresh_token)).status).toBe(200);
  });

  test('GATEHOUSE_REFRESH_TOKEN_REUSE_GRACE=0: the first reuse revokes the grant, as strict rotation does', async () => {
    const { client, tokens } = await obtainTokens(strict.issuer);
    const t0 = tokens.body.refresh_token as string;
    const s1 = (await refresh(strict, client.client_id, t0)).body.refresh_token as string;
    expect((await refresh(strict, client.client_id, t0)).body.error).toBe('invalid_grant');
    expect((await refresh(strict, client.client_id, s1)).body.error).toBe('invalid_grant');
  });
});

/**
 * Sends a refresh over a raw socket and drops the connection: `cutAfterMs` after the request went
 * out, or (`'answered'`) as soon as the answer's first bytes arrive, unread. Either way the client
 * never learns its new refresh token.
 */
function refreshAndHangUp(issuer: string, clientId: string, refreshToken: string, cutAfterMs: number | 'answered'): Promise<void> {
  const url = new URL(issuer);
  const body = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken, client_id: clientId }).toString();
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), '127.0.0.1', () => {
      socket.write(
        `POST /token HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
        () => {
          if (cutAfterMs !== 'answered') setTimeout(() => (socket.destroy(), resolve()), cutAfterMs);
        },
      );
    });
    socket.on('error', reject);
    socket.on('data', () => {
      if (cutAfterMs !== 'answered') return;
      socket.destroy();
      resolve();
    });
  });
}

describe('a client whose connection breaks after sending a refresh', () => {
  test('retries within the window and succeeds; a second presentation of the same token is reuse', async () => {
    const { client, tokens } = await obtainTokens(app.issuer);
    const t0 = tokens.body.refresh_token as string;
    // The answer arrived and was lost with the connection: the refresh committed.
    await refreshAndHangUp(app.issuer, client.client_id, t0, 'answered');
    const row = await app.db.selectFrom('oidc_payloads').select('consumed_at').where('model', '=', 'RefreshToken').where('id', '=', digestId(t0)).executeTakeFirst();
    expect(row?.consumed_at).toBeInstanceOf(Date);
    const retried = await refresh(app, client.client_id, t0);
    expect(retried.status).toBe(200);
    expect(await liveRefreshTokens(app, client.client_id)).toBe(1);
    expect(await events(app, client.client_id)).toContain('token.refreshed_within_grace');
    // A second client presenting that same token now: invalid_grant, and the grant is revoked.
    const second = await registerClient(app.issuer);
    const other = await refresh(app, second.client_id, t0);
    expect(other.status).toBe(400);
    expect(other.body.error).toBe('invalid_grant');
    expect((await refresh(app, client.client_id, retried.body.refresh_token)).body.error).toBe('invalid_grant');
    expect(await grantExists(app, client.client_id)).toBe(false);
  });

  test('after a retry within the window, the same client presenting that token yet again is reuse', async () => {
    const { client, tokens } = await obtainTokens(app.issuer);
    const t0 = tokens.body.refresh_token as string;
    await refreshAndHangUp(app.issuer, client.client_id, t0, 'answered');
    const retried = await refresh(app, client.client_id, t0);
    expect(retried.status).toBe(200);
    const again = await refresh(app, client.client_id, t0);
    expect(again.body.error).toBe('invalid_grant');
    expect((await refresh(app, client.client_id, retried.body.refresh_token)).body.error).toBe('invalid_grant');
    expect(await grantExists(app, client.client_id)).toBe(false);
  });

  test('cut 5 to 20 ms after sending, over and over: every retry works and one chain stays alive', async () => {
    const { client, tokens } = await obtainTokens(app.issuer);
    let current = tokens.body.refresh_token as string;
    for (const cut of [5, 10, 15, 20, 5, 10]) {
      await refreshAndHangUp(app.issuer, client.client_id, current, cut);
      // The cut request is either dropped (the server saw the hang-up first) or finished for nobody:
      // wait for the second, up to a bound, so that the retry does not race it.
      for (let waited = 0; waited < 2000; waited += 25) {
        const row = await app.db.selectFrom('oidc_payloads').select('consumed_at').where('model', '=', 'RefreshToken').where('id', '=', digestId(current)).executeTakeFirst();
        if (row?.consumed_at) break;
        await new Promise((r) => setTimeout(r, 25));
      }
      const retried = await refresh(app, client.client_id, current);
      expect(retried.status, `retry after a cut at ${cut} ms`).toBe(200);
      current = retried.body.refresh_token;
      expect(await liveRefreshTokens(app, client.client_id)).toBe(1);
    }
    expect((await refresh(app, client.client_id, current)).status).toBe(200);
  });
});
