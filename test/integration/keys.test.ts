/**
 * Signing-key rotation (issue 4 §6): a new key is published before it signs; the old key stays
 * published until every token it signed has expired; listing never shows private material.
 * Time is moved by editing the key rows; "a running server" is an app built on the same database.
 */
import { decodeProtectedHeader } from 'jose';
import { sql } from 'kysely';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { createKeysService } from '../../src/keys/keys.service.ts';
import { rotateSigningKey, rotateSigningKeyIfDue } from '../../src/keys/rotation.ts';
import { createSecretBox } from '../../src/keys/secret-box.ts';
import { seed, startTestApp, type TestApp } from '../support/app.ts';
import { obtainTokens } from '../support/oauth.ts';

let app: TestApp;
beforeAll(async () => {
  app = await startTestApp();
  await seed(app);
});
afterAll(() => app?.close());

/** The kids an instance started now publishes, and the kid it signs a new access token with. */
async function instanceView() {
  const instance = await startTestApp({ database: app.database });
  try {
    const jwks = (await (await fetch(`${instance.issuer}/jwks`)).json()) as { keys: Array<{ kid: string; d?: string }> };
    const { tokens } = await obtainTokens(instance.issuer);
    return { published: jwks.keys.map((k) => k.kid), signedWith: decodeProtectedHeader(tokens.body.access_token).kid, jwks };
  } finally {
    await instance.close();
  }
}

test('rotation: published first, signing later, unpublished after its tokens expire', async () => {
  const keys = createKeysService({ db: app.db, secretBox: createSecretBox(app.config.keyEncryptionKey) });
  const [original] = (await keys.list()).map((k) => k.kid);
  const rotated = await rotateSigningKey({ keys, resources: app.resources, audit: app.audit }, { leadSeconds: 600, defaultTokenTtl: 600, actor: 'admin:test' });
  expect(rotated.activatesAt.getTime() - Date.now()).toBeGreaterThan(590_000);
  // Unpublished once the longest access-token lifetime (600 s) plus a minute has passed after the switch.
  expect(rotated.retiredUnpublishAt.getTime() - rotated.activatesAt.getTime()).toBe(660_000);

  // 1. Before activation: both published, the original still signs.
  const before = await instanceView();
  expect(before.published.sort()).toEqual([original, rotated.kid].sort());
  expect(before.signedWith).toBe(original);
  expect(before.jwks.keys.every((k) => k.d === undefined)).toBe(true);
  expect((await keys.list()).map((k) => [k.kid, k.state])).toEqual([[rotated.kid, 'next'], [original, 'active']]);

  // 2. After activation: the new key signs; the old one is still published for its tokens.
  await app.db.updateTable('keys').set({ activates_at: sql<Date>`now() - interval '1 second'` }).where('kid', '=', rotated.kid).execute();
  await app.db.updateTable('keys').set({ retired_at: sql<Date>`now() - interval '1 second'` }).where('kid', '=', original!).execute();
  const after = await instanceView();
  expect(after.signedWith).toBe(rotated.kid);
  expect(after.published.sort()).toEqual([original, rotated.kid].sort());
  expect((await keys.list()).map((k) => [k.kid, k.state])).toEqual([[rotated.kid, 'active'], [original, 'retired']]);

  // 3. After every token it signed has expired: the old key leaves the JWKS.
  await app.db.updateTable('keys').set({ unpublish_at: sql<Date>`now() - interval '1 second'` }).where('kid', '=', original!).execute();
  const later = await instanceView();
  expect(later.published).toEqual([rotated.kid]);
  expect((await keys.list()).find((k) => k.kid === original)?.state).toBe('unpublished');

  const [event] = await app.audit.list({ event: 'key.rotated' });
  expect(event).toMatchObject({ actor: 'admin:test', details: { kid: rotated.kid } });
});

test('the rotation status tells the scheduler when a rotation is due and whether one is scheduled', async () => {
  const keys = createKeysService({ db: app.db, secretBox: createSecretBox(app.config.keyEncryptionKey) });
  const status = await keys.rotationStatus();
  expect(status.scheduled).toBe(false);
  expect(status.activeAgeSeconds).toBeGreaterThanOrEqual(0);
  await keys.rotate({ leadSeconds: 60, tokenTtlSeconds: 60 });
  expect((await keys.rotationStatus()).scheduled).toBe(true);
});

test('instances whose schedules fire together rotate once between them, decided under the lock', async () => {
  const keys = createKeysService({ db: app.db, secretBox: createSecretBox(app.config.keyEncryptionKey) });
  // Nothing scheduled, the active key old enough: every instance sees the rotation as due.
  await app.db.deleteFrom('keys').where('use', '=', 'sig').where('activates_at', '>', sql<Date>`now()`).execute();
  const due = { leadSeconds: 60, defaultTokenTtl: 600, actor: 'gatehouse', intervalSeconds: 0 };
  const before = (await keys.list()).length;
  const outcomes = await Promise.all(
    Array.from({ length: 4 }, () => rotateSigningKeyIfDue({ keys: createKeysService({ db: app.db, secretBox: createSecretBox(app.config.keyEncryptionKey) }), resources: app.resources, audit: app.audit }, due)),
  );
  expect(outcomes.filter(Boolean)).toHaveLength(1);
  expect((await keys.list()).length).toBe(before + 1);
  // Not due yet (the active key is younger than the interval): nothing happens.
  await app.db.deleteFrom('keys').where('use', '=', 'sig').where('activates_at', '>', sql<Date>`now()`).execute();
  expect(await rotateSigningKeyIfDue({ keys, resources: app.resources, audit: app.audit }, { ...due, intervalSeconds: 365 * 86400 })).toBeUndefined();
});
