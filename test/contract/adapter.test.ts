/**
 * The contract of the oidc-provider adapter (src/oidc/adapter.ts) against a real database:
 * PostgreSQL, or PGlite with GATEHOUSE_TEST_DB=pglite.
 */
import { createHash, randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { errors, type Adapter, type AdapterPayload } from 'oidc-provider';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { inUnitOfWork } from '../../src/db/unit-of-work.ts';
import { createSecretBox } from '../../src/keys/secret-box.ts';
import { createClientsRepository } from '../../src/clients/clients.repository.ts';
import { createTrustPolicy } from '../../src/clients/trust-policy.ts';
import { recognisedInThisRequest } from '../../src/clients/recognition.ts';
import { runInRequestContext } from '../../src/http/request-context.ts';
import { HASHED_MODELS, createAdapterFactory, digestId, sweepExpired } from '../../src/oidc/adapter.ts';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';

let database: TestDatabase;
let adapterFor: (model: string) => Adapter;

beforeAll(async () => {
  database = await createTestDatabase();
  adapterFor = createAdapterFactory({
    db: database.db,
    secretBox: createSecretBox(Buffer.alloc(32, 7)),
    clients: createClientsRepository(database.db),
    trustPolicy: createTrustPolicy({ approval: 'manual', trustedDocumentHosts: [], trustedCeiling: 'defaults', defaultScopes: async () => [] }),
  });
});
afterAll(() => database?.close());

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/** A fresh identifier shaped like oidc-provider's (43 base64url characters). */
function newId(): string {
  return randomBytes(32).toString('base64url');
}

const now = () => Math.floor(Date.now() / 1000);

/** The key a model's row is stored under. */
function storedKey(model: string, id: string): string {
  return HASHED_MODELS.has(model) ? digestId(id) : id;
}

/** The raw `oidc_payloads` row, with the payload as the text PostgreSQL stores. */
async function storedRow(model: string, key: string) {
  return database.db
    .selectFrom('oidc_payloads')
    .selectAll()
    .select(sql<string>`payload::text`.as('payload_text'))
    .where('model', '=', model)
    .where('id', '=', key)
    .executeTakeFirst();
}

/** Moves a row's expiry into the past, as if its lifetime had run out `secondsAgo` ago. */
async function expire(model: string, id: string, secondsAgo = 1): Promise<void> {
  const result = await database.db
    .updateTable('oidc_payloads')
    .set({ expires_at: sql<Date>`now() - make_interval(secs => ${secondsAgo})` })
    .where('model', '=', model)
    .where('id', '=', storedKey(model, id))
    .executeTakeFirst();
  expect(result.numUpdatedRows).toBe(1n);
}

type PayloadFactory = (id: string, extra?: Partial<AdapterPayload>) => AdapterPayload;

type PayloadModel =
  | 'AuthorizationCode'
  | 'RefreshToken'
  | 'AccessToken'
  | 'RegistrationAccessToken'
  | 'Grant'
  | 'Session'
  | 'Interaction'
  | 'ReplayDetection';

/** Realistic payloads, shaped like the ones oidc-provider stores for each model. */
const PAYLOADS: Record<PayloadModel, PayloadFactory> = {
  AuthorizationCode: (id, extra) => ({
    iat: now(),
    exp: now() + 60,
    kind: 'AuthorizationCode',
    jti: id,
    accountId: 'account-1',
    clientId: 'client-1',
    grantId: 'grant-1',
    sessionUid: 'session-uid-1',
    authTime: now(),
    scope: 'files:read',
    resource: 'https://mcp.example.com',
    redirectUri: 'http://127.0.0.1:3000/callback',
    codeChallenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
    codeChallengeMethod: 'S256',
    ...extra,
  }),
  RefreshToken: (id, extra) => ({
    iat: now(),
    exp: now() + 86_400,
    kind: 'RefreshToken',
    jti: id,
    accountId: 'account-1',
    clientId: 'client-1',
    grantId: 'grant-1',
    sessionUid: 'session-uid-1',
    gty: 'authorization_code',
    scope: 'files:read',
    resource: 'https://mcp.example.com',
    rotations: 0,
    iiat: now(),
    ...extra,
  }),
  AccessToken: (id, extra) => ({
    iat: now(),
    exp: now() + 3600,
    kind: 'AccessToken',
    jti: id,
    accountId: 'account-1',
    clientId: 'client-1',
    grantId: 'grant-1',
    gty: 'authorization_code',
    scope: 'files:read',
    aud: 'https://mcp.example.com',
    ...extra,
  }),
  RegistrationAccessToken: (id, extra) => ({
    iat: now(),
    kind: 'RegistrationAccessToken',
    jti: id,
    clientId: 'client-1',
    policies: [],
    ...extra,
  }),
  Grant: (id, extra) => ({
    iat: now(),
    exp: now() + 86_400,
    kind: 'Grant',
    jti: id,
    accountId: 'account-1',
    clientId: 'client-1',
    openid: { scope: 'openid' },
    resources: { 'https://mcp.example.com': 'files:read' },
    ...extra,
  }),
  Session: (id, extra) => ({
    iat: now(),
    exp: now() + 1_209_600,
    kind: 'Session',
    jti: id,
    uid: newId(),
    accountId: 'account-1',
    loginTs: now(),
    authorizations: { 'client-1': { sid: newId(), grantId: 'grant-1' } },
    ...extra,
  }),
  Interaction: (id, extra) => ({
    iat: now(),
    exp: now() + 3600,
    kind: 'Interaction',
    jti: id,
    returnTo: `http://localhost/auth/${id}`,
    prompt: { name: 'login', reasons: ['no_session'], details: {} },
    params: { client_id: 'client-1', response_type: 'code', scope: 'files:read' },
    ...extra,
  }),
  ReplayDetection: (id, extra) => ({
    iat: now(),
    exp: now() + 60,
    kind: 'ReplayDetection',
    jti: id,
    ...extra,
  }),
};

/** Stores a fresh row of `model` and returns its raw id and payload. */
async function stored(
  model: PayloadModel,
  options: { expiresIn?: number; extra?: Partial<AdapterPayload> } = {},
): Promise<{ id: string; payload: AdapterPayload }> {
  const id = newId();
  const payload = PAYLOADS[model](id, options.extra);
  await adapterFor(model).upsert(id, payload, options.expiresIn ?? 3600);
  return { id, payload };
}

function expectInvalidGrant(reason: unknown): void {
  expect(reason).toBeInstanceOf(errors.InvalidGrant);
  expect(reason).toMatchObject({ error: 'invalid_grant' });
}

// ---------------------------------------------------------------------------------------------
// Shared behaviour, declared per model
// ---------------------------------------------------------------------------------------------

function roundTrips(model: PayloadModel): void {
  test('upsert then find returns the payload, with jti equal to the id', async () => {
    const { id, payload } = await stored(model);
    const found = await adapterFor(model).find(id);
    expect(found).toEqual({ ...payload, jti: id });
    expect(found?.consumed).toBeUndefined();
  });

  test('find of an id that was never stored returns undefined', async () => {
    expect(await adapterFor(model).find(newId())).toBeUndefined();
  });

  test('upsert of an existing id replaces the payload and its expiry', async () => {
    const { id, payload } = await stored(model, { expiresIn: 60 });
    const updated = { ...payload, iat: now() + 5, extra: { updated: true } };
    await adapterFor(model).upsert(id, updated, 7200);
    expect(await adapterFor(model).find(id)).toEqual({ ...updated, jti: id });
    const row = await storedRow(model, storedKey(model, id));
    expect(row?.expires_at?.getTime()).toBeGreaterThan(Date.now() + 3600_000);
    const count = await database.db
      .selectFrom('oidc_payloads')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .where('model', '=', model)
      .where('id', '=', storedKey(model, id))
      .executeTakeFirstOrThrow();
    expect(Number(count.n)).toBe(1);
  });

  test('upsert records the expiry, expiresIn seconds from now', async () => {
    const before = Date.now();
    const { id } = await stored(model, { expiresIn: 600 });
    const after = Date.now();
    const row = await storedRow(model, storedKey(model, id));
    const expiresAt = row?.expires_at?.getTime() ?? Number.NaN;
    expect(expiresAt).toBeGreaterThanOrEqual(before + 600_000 - 1000);
    expect(expiresAt).toBeLessThanOrEqual(after + 600_000 + 1000);
  });
}

function storesDigestsOnly(model: PayloadModel): void {
  test('stores only the SHA-256 digest of the id: the raw value is nowhere in the row', async () => {
    const { id } = await stored(model);
    const rows = await database.db
      .selectFrom('oidc_payloads')
      .selectAll()
      .select(sql<string>`payload::text`.as('payload_text'))
      .where('model', '=', model)
      .where('id', 'in', [id, digestId(id)])
      .execute();
    expect(rows).toHaveLength(1);
    const row = rows.find((r) => r.id === digestId(id));
    expect(row).toBeDefined();
    expect(row!.id).toBe(digestId(id));
    expect(row!.id).not.toContain(id);
    expect(row!.payload_text).not.toContain(id);
    expect(JSON.stringify(row)).not.toContain(id);
    // No row of the model is stored under the raw id.
    expect(rows.some((r) => r.id === id)).toBe(false);
  });

  test('the stored digest is not itself a usable id', async () => {
    const { id } = await stored(model);
    expect(await adapterFor(model).find(digestId(id))).toBeUndefined();
  });
}

function storesIdsVerbatim(model: PayloadModel): void {
  test('is not hashed: the row is stored under the id itself', async () => {
    const { id } = await stored(model);
    const row = await storedRow(model, id);
    expect(row?.id).toBe(id);
  });
}

function expires(model: PayloadModel): void {
  test('find of an expired row returns undefined', async () => {
    const { id, payload } = await stored(model, { expiresIn: 1 });
    expect(await adapterFor(model).find(id)).toEqual({ ...payload, jti: id });
    await expire(model, id);
    expect(await adapterFor(model).find(id)).toBeUndefined();
  });

  test('a row stored without expiresIn never expires', async () => {
    const id = newId();
    const payload = PAYLOADS[model](id);
    await adapterFor(model).upsert(id, payload);
    const row = await storedRow(model, storedKey(model, id));
    expect(row).toBeDefined();
    expect(row!.expires_at).toBeNull();
    expect(await adapterFor(model).find(id)).toEqual({ ...payload, jti: id });
  });
}

function consumes(model: PayloadModel): void {
  test('consume marks the row consumed: a later find returns it with a truthy `consumed`', async () => {
    const { id, payload } = await stored(model);
    await adapterFor(model).consume(id);
    const found = await adapterFor(model).find(id);
    expect(found).toMatchObject({ ...payload, jti: id });
    expect(found?.consumed).toBeTruthy();
    // oidc-provider treats `consumed` as a timestamp in seconds.
    expect(found?.consumed).toBeGreaterThan(now() - 120);
    expect(found?.consumed).toBeLessThanOrEqual(now() + 120);
  });

  test('a second consume of the same id rejects with invalid_grant', async () => {
    const { id } = await stored(model);
    await adapterFor(model).consume(id);
    const second = await adapterFor(model).consume(id).then(
      () => undefined,
      (err: unknown) => err,
    );
    expectInvalidGrant(second);
  });

  test('consume is atomic: of 5 concurrent consumes exactly one succeeds', async () => {
    for (let round = 0; round < 5; round++) {
      const { id } = await stored(model);
      // One adapter instance per caller, as separate requests would have.
      const results = await Promise.allSettled(Array.from({ length: 5 }, () => adapterFor(model).consume(id)));
      const fulfilled = results.filter((r) => r.status === 'fulfilled');
      const rejected = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      expect(fulfilled).toHaveLength(1);
      expect(rejected).toHaveLength(4);
      for (const r of rejected) expectInvalidGrant(r.reason);
      expect((await adapterFor(model).find(id))?.consumed).toBeTruthy();
    }
  });

  test('consume of an unknown id rejects with invalid_grant', async () => {
    const err = await adapterFor(model).consume(newId()).then(
      () => undefined,
      (e: unknown) => e,
    );
    expectInvalidGrant(err);
  });
}

function revokesByGrantId(model: PayloadModel): void {
  test('revokeByGrantId removes every row of the model with that grant and nothing else', async () => {
    const grantId = newId();
    const otherGrantId = newId();
    const a = await stored(model, { extra: { grantId } });
    const b = await stored(model, { extra: { grantId } });
    const other = await stored(model, { extra: { grantId: otherGrantId } });
    // The same grant in another model is that model's business (oidc-provider revokes per model).
    const otherModel: PayloadModel = model === 'AccessToken' ? 'RefreshToken' : 'AccessToken';
    const sibling = await stored(otherModel, { extra: { grantId } });

    await adapterFor(model).revokeByGrantId(grantId);

    expect(await adapterFor(model).find(a.id)).toBeUndefined();
    expect(await adapterFor(model).find(b.id)).toBeUndefined();
    expect(await storedRow(model, storedKey(model, a.id))).toBeUndefined();
    expect(await storedRow(model, storedKey(model, b.id))).toBeUndefined();
    expect(await adapterFor(model).find(other.id)).toEqual({ ...other.payload, jti: other.id });
    expect(await adapterFor(otherModel).find(sibling.id)).toEqual({ ...sibling.payload, jti: sibling.id });
  });

  test('revokeByGrantId also removes consumed rows', async () => {
    const grantId = newId();
    const { id } = await stored(model, { extra: { grantId } });
    if (model !== 'AccessToken') await adapterFor(model).consume(id);
    await adapterFor(model).revokeByGrantId(grantId);
    expect(await storedRow(model, storedKey(model, id))).toBeUndefined();
  });
}

function destroys(model: PayloadModel): void {
  test('destroy removes the row and leaves others alone', async () => {
    const { id } = await stored(model);
    const other = await stored(model);
    await adapterFor(model).destroy(id);
    expect(await adapterFor(model).find(id)).toBeUndefined();
    expect(await storedRow(model, storedKey(model, id))).toBeUndefined();
    expect(await adapterFor(model).find(other.id)).toEqual({ ...other.payload, jti: other.id });
  });

  test('destroy of an unknown id is harmless', async () => {
    await expect(adapterFor(model).destroy(newId())).resolves.toBeUndefined();
  });
}

// ---------------------------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------------------------

describe('AuthorizationCode', () => {
  roundTrips('AuthorizationCode');
  storesDigestsOnly('AuthorizationCode');
  expires('AuthorizationCode');
  consumes('AuthorizationCode');
  revokesByGrantId('AuthorizationCode');
  destroys('AuthorizationCode');
});

describe('RefreshToken', () => {
  roundTrips('RefreshToken');
  storesDigestsOnly('RefreshToken');
  expires('RefreshToken');
  consumes('RefreshToken');
  revokesByGrantId('RefreshToken');
  destroys('RefreshToken');

  test('a consume inside a unit of work that fails is rolled back, so the token can be retried', async () => {
    const { id } = await stored('RefreshToken');
    const failure = new Error('the database went away half-way');
    await expect(
      inUnitOfWork(
        database.db,
        async () => {
          await adapterFor('RefreshToken').consume(id);
          throw failure;
        },
        () => true,
      ),
    ).rejects.toBe(failure);
    expect((await adapterFor('RefreshToken').find(id))?.consumed).toBeUndefined();
    await expect(adapterFor('RefreshToken').consume(id)).resolves.toBeUndefined();
  });

  test('a revocation inside a unit of work that fails is kept (reuse detection must stick)', async () => {
    const grantId = newId();
    const { id } = await stored('RefreshToken', { extra: { grantId } });
    const failure = new errors.InvalidGrant('refresh token already used');
    await expect(
      inUnitOfWork(
        database.db,
        async () => {
          await adapterFor('RefreshToken').revokeByGrantId(grantId);
          throw failure;
        },
        () => true,
      ),
    ).rejects.toBe(failure);
    expect(await adapterFor('RefreshToken').find(id)).toBeUndefined();
  });
});

describe('AccessToken', () => {
  roundTrips('AccessToken');
  storesDigestsOnly('AccessToken');
  expires('AccessToken');
  revokesByGrantId('AccessToken');
  destroys('AccessToken');
});

describe('RegistrationAccessToken', () => {
  roundTrips('RegistrationAccessToken');
  storesDigestsOnly('RegistrationAccessToken');
  expires('RegistrationAccessToken');
  destroys('RegistrationAccessToken');
});

describe('Grant', () => {
  roundTrips('Grant');
  storesIdsVerbatim('Grant');
  expires('Grant');
  destroys('Grant');
});

describe('Session', () => {
  roundTrips('Session');
  storesIdsVerbatim('Session');
  expires('Session');
  destroys('Session');

  test('findByUid finds the session by its uid', async () => {
    const { id, payload } = await stored('Session');
    await stored('Session'); // another session, not to be returned
    expect(await adapterFor('Session').findByUid(payload.uid as string)).toEqual(payload);
    expect((await adapterFor('Session').findByUid(payload.uid as string))?.jti).toBe(id);
  });

  test('findByUid of an unknown uid returns undefined', async () => {
    expect(await adapterFor('Session').findByUid(newId())).toBeUndefined();
  });

  test('the id findByUid returns can be used with find and destroy (ids are not hashed)', async () => {
    const { payload } = await stored('Session');
    const byUid = await adapterFor('Session').findByUid(payload.uid as string);
    expect(byUid?.jti).toBeDefined();
    expect(await adapterFor('Session').find(byUid!.jti!)).toEqual(payload);
    await adapterFor('Session').destroy(byUid!.jti!);
    expect(await adapterFor('Session').findByUid(payload.uid as string)).toBeUndefined();
  });

  test('findByUid of an expired session returns undefined', async () => {
    const { id, payload } = await stored('Session', { expiresIn: 1 });
    await expire('Session', id);
    expect(await adapterFor('Session').findByUid(payload.uid as string)).toBeUndefined();
  });

  test('findByUid only looks at sessions', async () => {
    const uid = newId();
    await stored('Interaction', { extra: { uid } });
    expect(await adapterFor('Session').findByUid(uid)).toBeUndefined();
  });
});

describe('Interaction', () => {
  roundTrips('Interaction');
  storesIdsVerbatim('Interaction');
  expires('Interaction');
  destroys('Interaction');
});

describe('Client', () => {
  const client = (clientId: string, extra: Record<string, unknown> = {}): AdapterPayload => ({
    client_id: clientId,
    client_id_issued_at: now(),
    // Each its own name: identical public clients are recognised as one (clients/recognition.ts).
    client_name: `Example MCP client ${clientId}`,
    redirect_uris: ['http://127.0.0.1:3000/callback'],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    ...extra,
  });

  async function clientRow(clientId: string) {
    return database.db
      .selectFrom('clients')
      .selectAll()
      .select(sql<string>`metadata::text`.as('metadata_text'))
      .where('client_id', '=', clientId)
      .executeTakeFirst();
  }

  test('upsert then find returns the metadata', async () => {
    const id = newId();
    const payload = client(id, { token_endpoint_auth_method: 'none' });
    await adapterFor('Client').upsert(id, payload);
    expect(await adapterFor('Client').find(id)).toEqual(payload);
  });

  test('the client secret is stored only as its SHA-256 digest, handed back as sha256:<digest>', async () => {
    const id = newId();
    const secret = randomBytes(32).toString('base64url');
    const payload = client(id, { client_secret: secret, client_secret_expires_at: 0 });
    await adapterFor('Client').upsert(id, payload);

    const row = await clientRow(id);
    expect(row).toBeDefined();
    expect(row!.client_secret_hash).toBe(createHash('sha256').update(secret).digest('hex'));
    expect(row!.client_secret_enc).toBeNull();
    expect(row!.metadata).not.toHaveProperty('client_secret');
    expect(JSON.stringify(row)).not.toContain(secret);

    const found = await adapterFor('Client').find(id);
    expect(found).toEqual({ ...payload, client_secret: `sha256:${row!.client_secret_hash}` });
    // Saving what find returned (oidc-provider updating a client) keeps the same digest.
    await adapterFor('Client').upsert(id, found!);
    expect((await clientRow(id))!.client_secret_hash).toBe(row!.client_secret_hash);
  });

  test('a client without a secret has no digest', async () => {
    const id = newId();
    await adapterFor('Client').upsert(id, client(id, { token_endpoint_auth_method: 'none' }));
    expect((await clientRow(id))?.client_secret_hash).toBeNull();
    expect(await adapterFor('Client').find(id)).not.toHaveProperty('client_secret');
  });

  test('upsert of an existing client replaces its metadata and secret', async () => {
    const id = newId();
    await adapterFor('Client').upsert(id, client(id, { client_secret: 'first-secret-value' }));
    const updated = client(id, { client_name: 'Renamed', client_secret: 'second-secret-value' });
    await adapterFor('Client').upsert(id, updated);
    expect(await adapterFor('Client').find(id)).toEqual({ ...updated, client_secret: `sha256:${createHash('sha256').update('second-secret-value').digest('hex')}` });
    const count = await database.db
      .selectFrom('clients')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .where('client_id', '=', id)
      .executeTakeFirstOrThrow();
    expect(Number(count.n)).toBe(1);
  });

  test('a secret encrypted before digests (migration 0005) still works, and cannot be moved to another client', async () => {
    const a = newId();
    const b = newId();
    const box = createSecretBox(Buffer.alloc(32, 7));
    await adapterFor('Client').upsert(a, client(a, { token_endpoint_auth_method: 'none' }));
    await adapterFor('Client').upsert(b, client(b, { token_endpoint_auth_method: 'none' }));
    await database.db.updateTable('clients').set({ client_secret_enc: box.encrypt('legacy-secret', `client-secret:${a}`) }).where('client_id', '=', a).execute();
    expect((await adapterFor('Client').find(a))?.client_secret).toBe('legacy-secret');
    const aRow = await clientRow(a);
    await database.db.updateTable('clients').set({ client_secret_enc: aRow!.client_secret_enc }).where('client_id', '=', b).execute();
    await expect(adapterFor('Client').find(b)).rejects.toThrow();
  });

  test('a registered client is recorded pending (no trust policy), by dcr; re-registration keeps its status', async () => {
    const id = newId();
    await adapterFor('Client').upsert(id, client(id, { token_endpoint_auth_method: 'none' }));
    const row = await clientRow(id);
    expect(row).toMatchObject({ status: 'pending', registration_method: 'dcr', ceiling: {} });
    await database.db.updateTable('clients').set({ status: 'approved' }).where('client_id', '=', id).execute();
    await adapterFor('Client').upsert(id, client(id, { token_endpoint_auth_method: 'none', client_name: 'Renamed' }));
    expect((await clientRow(id))?.status).toBe('approved');
  });

  test('a public client with the same metadata as a stored one is recognised, not stored; an update of itself is stored', async () => {
    const first = newId();
    const second = newId();
    const same = { token_endpoint_auth_method: 'none', client_name: `Twin ${first}` };
    await adapterFor('Client').upsert(first, client(first, same));
    await runInRequestContext({ ip: '127.0.0.1', userAgent: undefined, requestId: 'r1' }, async () => {
      await adapterFor('Client').upsert(second, client(second, same));
      expect(recognisedInThisRequest()).toMatchObject({ generatedId: second, clientId: first, status: 'pending' });
    });
    expect(await clientRow(second)).toBeUndefined();
    // A confidential twin is stored: its secret is its own.
    const confidential = newId();
    await adapterFor('Client').upsert(confidential, client(confidential, { ...same, token_endpoint_auth_method: 'client_secret_basic', client_secret: 's3cret' }));
    expect(await clientRow(confidential)).toBeDefined();
    // Saving the first client again (an update) is never a recognition of anything else.
    const other = newId();
    await adapterFor('Client').upsert(other, client(other, { token_endpoint_auth_method: 'none' }));
    await adapterFor('Client').upsert(other, client(other, same));
    expect((await clientRow(other))?.metadata).toMatchObject({ client_name: `Twin ${first}` });
  });

  test('a metadata-document client recorded in the table is not served as a registered client', async () => {
    // Only the document path may serve it (URL ids never reach this lookup); a row marked cimd is not a DCR client.
    const id = newId();
    await database.db.insertInto('clients').values({ client_id: id, metadata: JSON.stringify(client(id)), registration_method: 'cimd' }).execute();
    expect(await adapterFor('Client').find(id)).toBeUndefined();
  });

  test('find of an unknown client returns undefined', async () => {
    expect(await adapterFor('Client').find(newId())).toBeUndefined();
  });

  test('a Client ID Metadata Document URL that was never stored returns undefined', async () => {
    expect(await adapterFor('Client').find('https://client.example.com/.well-known/oauth-client.json')).toBeUndefined();
  });

  test('destroy removes the client', async () => {
    const id = newId();
    const other = newId();
    await adapterFor('Client').upsert(id, client(id, { client_secret: 'to-be-destroyed' }));
    await adapterFor('Client').upsert(other, client(other));
    await adapterFor('Client').destroy(id);
    expect(await adapterFor('Client').find(id)).toBeUndefined();
    expect(await clientRow(id)).toBeUndefined();
    expect(await adapterFor('Client').find(other)).toEqual(client(other, { client_id_issued_at: expect.any(Number) }));
  });

  test('clients are not stored in oidc_payloads', async () => {
    const id = newId();
    await adapterFor('Client').upsert(id, client(id));
    const rows = await database.db.selectFrom('oidc_payloads').select('id').where('id', '=', id).execute();
    expect(rows).toEqual([]);
  });
});

describe('ReplayDetection', () => {
  roundTrips('ReplayDetection');
  storesIdsVerbatim('ReplayDetection');
  expires('ReplayDetection');
  destroys('ReplayDetection');
});

describe('Session', () => {
  test('a stale save under the id a session had before it was renewed is dropped, not an error', async () => {
    const uid = newId();
    const before = newId();
    const after = newId();
    const payload = (id: string) => ({ ...PAYLOADS.Session(id), uid }) as AdapterPayload;
    await adapterFor('Session').upsert(before, payload(before), 3600);
    // The session is renewed (new id, same uid) by one request ...
    await adapterFor('Session').destroy(before);
    await adapterFor('Session').upsert(after, payload(after), 3600);
    // ... while another request of the same browser still saves it under the old id.
    await expect(adapterFor('Session').upsert(before, payload(before), 3600)).resolves.toBeUndefined();
    expect(await adapterFor('Session').find(after)).toBeDefined();
    expect(await adapterFor('Session').find(before)).toBeUndefined();
  });
});

describe('sweepExpired', () => {
  test('deletes expired rows, keeps live and non-expiring ones, and returns how many it deleted', async () => {
    // Start from a table with no expired rows (earlier tests leave some behind).
    await database.db.deleteFrom('oidc_payloads').where('expires_at', '<=', sql<Date>`now()`).execute();

    const expiredCode = await stored('AuthorizationCode', { expiresIn: 1 });
    const expiredSession = await stored('Session', { expiresIn: 1 });
    const live = await stored('RefreshToken', { expiresIn: 3600 });
    const forever = newId();
    await adapterFor('RegistrationAccessToken').upsert(forever, PAYLOADS.RegistrationAccessToken(forever));
    await expire('AuthorizationCode', expiredCode.id);
    await expire('Session', expiredSession.id);

    expect(await sweepExpired(database.db, 0)).toMatchObject({ total: 2, payloads: { AuthorizationCode: 1, Session: 1 } });

    expect(await storedRow('AuthorizationCode', digestId(expiredCode.id))).toBeUndefined();
    expect(await storedRow('Session', expiredSession.id)).toBeUndefined();
    expect(await adapterFor('RefreshToken').find(live.id)).toBeDefined();
    expect(await adapterFor('RegistrationAccessToken').find(forever)).toBeDefined();

    expect((await sweepExpired(database.db, 0)).total).toBe(0);
  });

  test('keeps rows expired less than the grace period ago', async () => {
    await database.db.deleteFrom('oidc_payloads').where('expires_at', '<=', sql<Date>`now()`).execute();

    const recent = await stored('AccessToken', { expiresIn: 1 });
    const old = await stored('AccessToken', { expiresIn: 1 });
    await expire('AccessToken', recent.id, 60);
    await expire('AccessToken', old.id, 600);

    expect((await sweepExpired(database.db, 300)).total).toBe(1);
    expect(await storedRow('AccessToken', digestId(recent.id))).toBeDefined();
    expect(await storedRow('AccessToken', digestId(old.id))).toBeUndefined();
  });

  test('forgets rate-limit counters and sign-in failures after a quiet day, keeps live lockouts and recent ones', async () => {
    await database.db.deleteFrom('oidc_payloads').where('expires_at', '<=', sql<Date>`now()`).execute();
    await database.db
      .insertInto('rate_limit_counters')
      .values([
        { key: 'sweep:old', window_start: sql<Date>`now() - interval '25 hours'`, hits: 3 },
        { key: 'sweep:recent', window_start: sql<Date>`now() - interval '2 hours'`, hits: 3 },
      ])
      .execute();
    await database.db
      .insertInto('sign_in_attempts')
      .values([
        { key: 'sweep:quiet', failures: 4, locked_until: null, updated_at: sql<Date>`now() - interval '2 days'` },
        { key: 'sweep:still-locked', failures: 30, locked_until: sql<Date>`now() + interval '1 hour'`, updated_at: sql<Date>`now() - interval '2 days'` },
        { key: 'sweep:recent', failures: 2, locked_until: null, updated_at: sql<Date>`now()` },
      ])
      .execute();
    expect(await sweepExpired(database.db, 0)).toMatchObject({ total: 2, rateLimitCounters: 1, signInAttempts: 1 });
    const counters = await database.db.selectFrom('rate_limit_counters').select('key').where('key', 'like', 'sweep:%').execute();
    expect(counters.map((r) => r.key)).toEqual(['sweep:recent']);
    const attempts = await database.db.selectFrom('sign_in_attempts').select('key').where('key', 'like', 'sweep:%').orderBy('key').execute();
    expect(attempts.map((r) => r.key)).toEqual(['sweep:recent', 'sweep:still-locked']);
  });
});
