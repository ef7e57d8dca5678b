/**
 * Migrations with data (issue 7 §6; the habit is Ory Hydra's): every migration is applied in
 * order to a database that already holds what a deployment at the previous version would hold,
 * and at the end those rows must still be there, with the values the later migrations give them,
 * and readable by the CURRENT application code (repositories, services, the oidc-provider adapter).
 *
 * Rows are written with raw SQL shaped like each version's code wrote them (src/db/schema.ts only
 * describes the latest schema). Runs on PostgreSQL and on the embedded PGlite.
 *
 * Adding a migration? Add a step to `STEPS` that inserts rows typical of a deployment at that
 * version, and check them in the tests at the end: the first test fails until you do.
 */
import { createCipheriv, createHash, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import argon2 from 'argon2';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';
import { sql, type RawBuilder } from 'kysely';
import { errors, type AdapterPayload } from 'oidc-provider';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createAccountsService } from '../../src/accounts/accounts.service.ts';
import { createSignInThrottle } from '../../src/accounts/sign-in-throttle.ts';
import { createAdminSessions } from '../../src/admin/admin-sessions.ts';
import { createApiTokens } from '../../src/admin/api-tokens.ts';
import { createAuditKeys } from '../../src/audit/audit-keys.ts';
import { createAuditSealer } from '../../src/audit/sealer.ts';
import { verifyAuditTrail } from '../../src/audit/verify.ts';
import { createClientsRepository } from '../../src/clients/clients.repository.ts';
import { createMetadataDocuments } from '../../src/clients/metadata-documents.ts';
import { metadataFingerprint } from '../../src/clients/recognition.ts';
import { createTrustPolicy } from '../../src/clients/trust-policy.ts';
import { openDatabase, type DatabaseHandle, type DB } from '../../src/db/database.ts';
import { MIGRATIONS_DIR, createMigrator, schemaStatus } from '../../src/db/migrator.ts';
import { createRateLimiter } from '../../src/http/rate-limit.ts';
import { createKeysService } from '../../src/keys/keys.service.ts';
import { createSecretBox } from '../../src/keys/secret-box.ts';
import { createAdapterFactory, installHashedClientSecrets } from '../../src/oidc/adapter.ts';
import { createResourcesService } from '../../src/resources/resources.service.ts';
import { createEmptyPostgresDatabase } from '../support/database.ts';

// ---------------------------------------------------------------------------------------------
// Fixed data: what a deployment's database holds, version by version
// ---------------------------------------------------------------------------------------------

const KEK = Buffer.alloc(32, 0x4b);
/** The current code's secret box, for reading the old rows back. */
const box = createSecretBox(KEK);
/**
 * Encryption under the KEK as every version so far wrote it (`v1.<iv>.<ciphertext+tag>`,
 * AES-256-GCM, the purpose as associated data): written out here, not taken from secret-box.ts, so
 * that a new format must still read the old one.
 */
function sealV1(plaintext: string, purpose: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', KEK, iv);
  cipher.setAAD(Buffer.from(purpose));
  const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final(), cipher.getAuthTag()]);
  return `v1.${iv.toString('base64url')}.${body.toString('base64url')}`;
}
const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const T0 = Math.floor(Date.now() / SECOND) * SECOND;
/** A timestamp `ms` from the start of the test (whole seconds, so it round-trips exactly). */
const at = (ms: number) => new Date(T0 + ms);
const epoch = (ms: number) => Math.floor((T0 + ms) / SECOND);
const iso = (d: Date) => d.toISOString();
const json = (v: unknown) => sql`${JSON.stringify(v)}::jsonb`;
const ts = (d: Date | null) => (d === null ? sql`NULL::timestamptz` : sql`${iso(d)}::timestamptz`);
/** The digest token-like ids are stored under (oidc_payloads.id), as every version computed it. */
const sha256b64u = (v: string) => createHash('sha256').update(v).digest('base64url');
const sha256hex = (v: string) => createHash('sha256').update(v).digest('hex');
const token = () => randomBytes(32).toString('base64url');

const NOTES = 'https://notes.example.com/mcp';
const RESOURCE_ID = '0b6f3f5e-6a43-4f36-9f0e-6f2f61a1c001';
const NOTES_SCOPES = [
  { name: 'notes:read', description: 'Read your notes' },
  { name: 'notes:write', description: 'Create and change your notes' },
];

const ALICE = { id: '6a1f0000-0000-4000-8000-00000000a11c', email: 'Alice@Example.com', password: 'correct horse battery staple' };
const BOB = { id: '6a1f0000-0000-4000-8000-000000000b0b', email: 'bob@example.com', password: 'bob-was-here-2024' };
const ADMIN = { id: '6a1f0000-0000-4000-8000-0000000ad111', email: 'root@example.com', password: 'administrator password' };

const CONF_V1 = 'dcr-confidential-v1';
const PUBLIC_V1 = 'dcr-public-v1';
const APPROVED_V3 = 'dcr-approved-v3';
const PENDING_V3 = 'dcr-pending-v3';
const REJECTED_V3 = 'dcr-rejected-v3';
const CONF_V5 = 'dcr-confidential-v5';
const PUBLIC_V7 = 'dcr-public-v7';
const CIMD = 'https://app.example.com/oauth/client.json';

/** Client metadata as the oidc-provider adapter stored it (everything but the secret). */
function dcrMetadata(clientId: string, name: string, confidential: boolean, issuedAt: number): Record<string, unknown> {
  return {
    client_id: clientId,
    client_id_issued_at: issuedAt,
    client_name: name,
    redirect_uris: confidential ? [`https://${clientId}.example.net/callback`] : ['http://127.0.0.1:33418/callback'],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: confidential ? 'client_secret_basic' : 'none',
    scope: 'notes:read',
    ...(confidential ? { client_secret_expires_at: 0 } : {}),
  };
}

const META = {
  [CONF_V1]: dcrMetadata(CONF_V1, 'Notes Sync', true, epoch(-60 * DAY)),
  [PUBLIC_V1]: dcrMetadata(PUBLIC_V1, 'Desktop Agent', false, epoch(-45 * DAY)),
  [APPROVED_V3]: dcrMetadata(APPROVED_V3, 'Team Assistant', true, epoch(-20 * DAY)),
  [PENDING_V3]: dcrMetadata(PENDING_V3, 'Unknown Tool', false, epoch(-2 * DAY)),
  [REJECTED_V3]: dcrMetadata(REJECTED_V3, 'Scraper', false, epoch(-3 * DAY)),
  [CONF_V5]: dcrMetadata(CONF_V5, 'Billing Bot', true, epoch(-10 * DAY)),
  [PUBLIC_V7]: { ...dcrMetadata(PUBLIC_V7, 'Editor Plugin', false, epoch(-1 * DAY)), software_id: 'editor-plugin', software_version: '1.4.2' },
};

const CIMD_DOCUMENT = {
  client_id: CIMD,
  client_name: 'App Example',
  redirect_uris: ['https://app.example.com/oauth/callback'],
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'none',
};

const SECRET_V1 = token();
const SECRET_V3 = token();
const SECRET_V5 = token();
const ENC_V1 = sealV1(SECRET_V1, `client-secret:${CONF_V1}`);
const ENC_V3 = sealV1(SECRET_V3, `client-secret:${APPROVED_V3}`);

/**
 * The v7 fingerprint of a public client's metadata (migration 0007), written out here rather than
 * imported, so that a change of the algorithm that strands stored fingerprints is noticed.
 */
function fingerprintAtV7(metadata: Record<string, unknown>): string {
  const perRegistration = new Set(['client_id', 'client_id_issued_at', 'client_secret', 'client_secret_expires_at']);
  const canonical = (value: unknown): unknown =>
    Array.isArray(value)
      ? value.map(canonical)
      : value && typeof value === 'object'
        ? Object.fromEntries(Object.keys(value).sort().map((k) => [k, canonical((value as Record<string, unknown>)[k])]))
        : value;
  const kept = Object.fromEntries(Object.entries(metadata).filter(([k, v]) => !perRegistration.has(k) && v !== undefined));
  return createHash('sha256').update(JSON.stringify(canonical(kept))).digest('base64url');
}

/**
 * An audit row's MAC as 0009's code computes it (src/audit/audit-mac.ts), written out here so that a
 * change of the algorithm that strands stored MACs is noticed: HKDF-SHA256 of the KEK gives the key,
 * HMAC-SHA256 over RFC 8785 canonical JSON of the fields, with a random nonce.
 */
function macAtV9(f: { event: string; actor?: string | null; client_id?: string | null; account_id?: string | null; resource?: string | null; details?: unknown }): string {
  const key = Buffer.from(hkdfSync('sha256', KEK, Buffer.alloc(0), 'gatehouse/audit/row-mac/v1', 32));
  const keyId = createHmac('sha256', key).update('gatehouse audit mac key id').digest('hex').slice(0, 16);
  const nonce = randomBytes(16).toString('base64url');
  const jcs = (v: unknown): string =>
    Array.isArray(v)
      ? `[${v.map(jcs).join(',')}]`
      : v && typeof v === 'object'
        ? `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${jcs((v as Record<string, unknown>)[k])}`).join(',')}}`
        : JSON.stringify(v);
  const message = jcs(['gatehouse.audit.mac.v1', keyId, nonce, f.event, f.actor ?? null, f.client_id ?? null, f.account_id ?? null, f.resource ?? null, null, null, null, f.details ?? {}]);
  return `${keyId}.${nonce}.${createHmac('sha256', key).update(message).digest('base64url')}`;
}

// Token-like values (only their digests are stored) and the rows' payloads.
const RT_V1 = token();
const CODE_V1 = token();
const RAT_V1 = token();
const RT_V2 = token();
const CODE_V8 = token();
const RT_V8 = token();
const RT_V10_OLD = token();
const RT_V10_NEW = token();
const SESSION_V1 = { id: 'session-v1-' + token().slice(0, 20), uid: 'session-uid-v1' };
const GRANT_V1 = 'grant-v1-' + token().slice(0, 20);
const GRANT_V2 = 'grant-v2-' + token().slice(0, 20);
const GRANT_V8 = 'grant-v8-' + token().slice(0, 20);
const INTERACTION_V1 = 'interaction-v1-' + token().slice(0, 20);

const PAYLOAD = {
  session: {
    iat: epoch(-2 * DAY), exp: epoch(12 * DAY), kind: 'Session', jti: SESSION_V1.id, uid: SESSION_V1.uid, accountId: ALICE.id,
    loginTs: epoch(-2 * DAY), authorizations: { [CONF_V1]: { sid: 'sid-v1', grantId: GRANT_V1 } },
  },
  grant: {
    iat: epoch(-2 * DAY), exp: epoch(12 * DAY), kind: 'Grant', jti: GRANT_V1, accountId: ALICE.id, clientId: CONF_V1,
    openid: { scope: 'openid' }, resources: { [NOTES]: 'notes:read' },
  },
  // Hashed models are stored without `jti` (the adapter restores it from the id it is asked for).
  refresh: {
    iat: epoch(-1 * DAY), exp: epoch(13 * DAY), kind: 'RefreshToken', accountId: ALICE.id, clientId: CONF_V1, grantId: GRANT_V1,
    sessionUid: SESSION_V1.uid, gty: 'authorization_code', scope: 'notes:read', resource: NOTES, rotations: 0, iiat: epoch(-1 * DAY),
  },
  code: {
    iat: epoch(-1 * MINUTE), exp: epoch(9 * MINUTE), kind: 'AuthorizationCode', accountId: ALICE.id, clientId: CONF_V1, grantId: GRANT_V1,
    sessionUid: SESSION_V1.uid, authTime: epoch(-2 * DAY), scope: 'notes:read', resource: NOTES,
    redirectUri: `https://${CONF_V1}.example.net/callback`, codeChallenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', codeChallengeMethod: 'S256',
  },
  registration: { iat: epoch(-60 * DAY), kind: 'RegistrationAccessToken', clientId: CONF_V1, policies: [] },
  interaction: {
    iat: epoch(-2 * HOUR), exp: epoch(-1 * HOUR), kind: 'Interaction', jti: INTERACTION_V1, returnTo: `https://auth.example.com/auth/${INTERACTION_V1}`,
    prompt: { name: 'login', reasons: ['no_session'], details: {} }, params: { client_id: PUBLIC_V1, response_type: 'code', scope: 'notes:read' },
  },
  grantV2: {
    iat: epoch(-5 * DAY), exp: epoch(9 * DAY), kind: 'Grant', jti: GRANT_V2, accountId: ALICE.id, clientId: CIMD,
    openid: { scope: 'openid' }, resources: { [NOTES]: 'notes:read notes:write' },
  },
  refreshV2: {
    iat: epoch(-5 * DAY), exp: epoch(9 * DAY), kind: 'RefreshToken', accountId: ALICE.id, clientId: CIMD, grantId: GRANT_V2,
    gty: 'authorization_code', scope: 'notes:read notes:write', resource: NOTES, rotations: 0, iiat: epoch(-5 * DAY),
  },
  codeV8: {
    iat: epoch(-30 * SECOND), exp: epoch(10 * MINUTE), kind: 'AuthorizationCode', accountId: ALICE.id, clientId: APPROVED_V3, grantId: GRANT_V8,
    scope: 'notes:read', resource: NOTES, redirectUri: `https://${APPROVED_V3}.example.net/callback`, codeChallenge: 'x'.repeat(43), codeChallengeMethod: 'S256',
  },
  refreshV8: {
    iat: epoch(0), exp: epoch(14 * DAY), kind: 'RefreshToken', accountId: ALICE.id, clientId: APPROVED_V3, grantId: GRANT_V8,
    gty: 'authorization_code', scope: 'notes:read', resource: NOTES, rotations: 0, iiat: epoch(0),
  },
};

const ADMIN_COOKIE = token();
const ADMIN_CSRF = token();
const PAT_ACTIVE = `gh_pat_${token()}`;
const PAT_REVOKED = `gh_pat_${token()}`;
const PAT_ACTIVE_ID = '7c0ffee0-0000-4000-8000-000000000001';
const PAT_REVOKED_ID = '7c0ffee0-0000-4000-8000-000000000002';
const COOKIE_KEY = { kid: `cookie-${randomBytes(8).toString('hex')}`, secret: token() };
const OLD_COOKIE_KEY = { kid: `cookie-${randomBytes(8).toString('hex')}`, secret: token() };

interface SigningKey {
  kid: string;
  full: JWK & { kid: string };
  publicJwk: JWK;
  enc: string;
}

/** An ES256 signing key as keys.service.ts has always stored it. */
async function signingKey(): Promise<SigningKey> {
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = await exportJWK(privateKey);
  const kid = await calculateJwkThumbprint(jwk);
  const full = { ...jwk, kid, alg: 'ES256', use: 'sig' };
  const { d: _d, ...publicJwk } = full;
  return { kid, full, publicJwk, enc: sealV1(JSON.stringify(full), `key:sig:${kid}`) };
}

/** Filled in once (argon2 and key generation are slow-ish), shared by both database kinds. */
const fixtures = {} as {
  aliceHash: string;
  bobHash: string;
  adminHash: string;
  /** K0: retired before 0006 existed; K1: signing since v1; K2: next, from the v6 rotation; GONE: rotated out and unpublished. */
  k0: SigningKey;
  k1: SigningKey;
  k2: SigningKey;
  gone: SigningKey;
};

beforeAll(async () => {
  const owasp = { type: argon2.argon2id, memoryCost: 19456, timeCost: 2, parallelism: 1 } as const;
  [fixtures.aliceHash, fixtures.bobHash, fixtures.adminHash, fixtures.k0, fixtures.k1, fixtures.k2, fixtures.gone] = await Promise.all([
    argon2.hash(ALICE.password, owasp),
    // An older hash with other parameters (argon2's defaults): must still verify.
    argon2.hash(BOB.password, { type: argon2.argon2id }),
    argon2.hash(ADMIN.password, owasp),
    signingKey(),
    signingKey(),
    signingKey(),
    signingKey(),
  ]);
});

// ---------------------------------------------------------------------------------------------
// One step per migration: what a deployment at that version would have stored
// ---------------------------------------------------------------------------------------------

interface Step {
  migration: string;
  seed: (db: DB) => Promise<void>;
}

const run = (db: DB, ...queries: RawBuilder<unknown>[]) => queries.reduce((p, q) => p.then(() => q.execute(db).then(() => undefined)), Promise.resolve());

function payloadRow(
  model: string,
  id: string,
  payload: Record<string, unknown>,
  columns: { grantId?: string; uid?: string; accountId?: string; clientId?: string; expiresAt?: Date | null; consumedAt?: Date | null; createdAt?: Date },
) {
  return sql`INSERT INTO oidc_payloads (model, id, payload, grant_id, uid, account_id, client_id, expires_at, consumed_at, created_at)
    VALUES (${model}, ${id}, ${json(payload)}, ${columns.grantId ?? null}, ${columns.uid ?? null}, ${columns.accountId ?? null},
            ${columns.clientId ?? null}, ${ts(columns.expiresAt ?? null)}, ${ts(columns.consumedAt ?? null)}, ${ts(columns.createdAt ?? at(0))})`;
}

const STEPS: Step[] = [
  {
    // Accounts, an MCP server, keys, two dynamically registered clients and their sessions/grants/tokens.
    migration: '0001_initial',
    seed: (db) =>
      run(
        db,
        sql`INSERT INTO accounts (id, email, password_hash, created_at, updated_at)
            VALUES (${ALICE.id}, ${ALICE.email}, ${fixtures.aliceHash}, ${ts(at(-90 * DAY))}, ${ts(at(-90 * DAY))})`,
        sql`INSERT INTO accounts (id, email, password_hash, disabled_at, created_at, updated_at)
            VALUES (${BOB.id}, ${BOB.email}, ${fixtures.bobHash}, ${ts(at(-10 * DAY))}, ${ts(at(-80 * DAY))}, ${ts(at(-10 * DAY))})`,
        sql`INSERT INTO resources (id, uri, name, scopes, default_scopes, access_token_ttl, created_at, updated_at)
            VALUES (${RESOURCE_ID}, ${NOTES}, 'Notes', ${json(NOTES_SCOPES)}, ${json(['notes:read'])}, 900, ${ts(at(-90 * DAY))}, ${ts(at(-90 * DAY))})`,
        sql`INSERT INTO keys (kid, use, alg, public_jwk, private_enc, created_at, retired_at)
            VALUES (${fixtures.k0.kid}, 'sig', 'ES256', ${json(fixtures.k0.publicJwk)}, ${fixtures.k0.enc}, ${ts(at(-100 * DAY))}, ${ts(at(-30 * DAY))})`,
        sql`INSERT INTO keys (kid, use, alg, public_jwk, private_enc, created_at)
            VALUES (${fixtures.k1.kid}, 'sig', 'ES256', ${json(fixtures.k1.publicJwk)}, ${fixtures.k1.enc}, ${ts(at(-30 * DAY))})`,
        sql`INSERT INTO keys (kid, use, alg, public_jwk, private_enc, created_at, retired_at)
            VALUES (${OLD_COOKIE_KEY.kid}, 'cookie', NULL, NULL, ${sealV1(OLD_COOKIE_KEY.secret, `key:cookie:${OLD_COOKIE_KEY.kid}`)}, ${ts(at(-100 * DAY))}, ${ts(at(-30 * DAY))})`,
        sql`INSERT INTO keys (kid, use, alg, public_jwk, private_enc, created_at)
            VALUES (${COOKIE_KEY.kid}, 'cookie', NULL, NULL, ${sealV1(COOKIE_KEY.secret, `key:cookie:${COOKIE_KEY.kid}`)}, ${ts(at(-30 * DAY))})`,
        // v1's adapter encrypted the client secret under the KEK.
        sql`INSERT INTO clients (client_id, metadata, client_secret_enc, created_at, updated_at)
            VALUES (${CONF_V1}, ${json(META[CONF_V1])}, ${ENC_V1}, ${ts(at(-60 * DAY))}, ${ts(at(-60 * DAY))})`,
        sql`INSERT INTO clients (client_id, metadata, created_at, updated_at)
            VALUES (${PUBLIC_V1}, ${json(META[PUBLIC_V1])}, ${ts(at(-45 * DAY))}, ${ts(at(-45 * DAY))})`,
        payloadRow('Session', SESSION_V1.id, PAYLOAD.session, { uid: SESSION_V1.uid, accountId: ALICE.id, expiresAt: at(12 * DAY) }),
        payloadRow('Grant', GRANT_V1, PAYLOAD.grant, { accountId: ALICE.id, clientId: CONF_V1, expiresAt: at(12 * DAY) }),
        payloadRow('RefreshToken', sha256b64u(RT_V1), PAYLOAD.refresh, { grantId: GRANT_V1, accountId: ALICE.id, clientId: CONF_V1, expiresAt: at(13 * DAY) }),
        payloadRow('AuthorizationCode', sha256b64u(CODE_V1), PAYLOAD.code, {
          grantId: GRANT_V1, accountId: ALICE.id, clientId: CONF_V1, expiresAt: at(9 * MINUTE), consumedAt: at(-30 * SECOND),
        }),
        payloadRow('RegistrationAccessToken', sha256b64u(RAT_V1), PAYLOAD.registration, { clientId: CONF_V1, createdAt: at(-60 * DAY) }),
        payloadRow('Interaction', INTERACTION_V1, PAYLOAD.interaction, { expiresAt: at(-1 * HOUR) }),
      ),
  },
  {
    // A cached metadata document, and the grant and refresh token of the client it describes
    // (at v2 a metadata-document client had no `clients` row).
    migration: '0002_client_metadata_documents',
    seed: (db) =>
      run(
        db,
        sql`INSERT INTO client_metadata_documents (client_id, document, fetched_at, expires_at)
            VALUES (${CIMD}, ${json(CIMD_DOCUMENT)}, ${ts(at(-5 * MINUTE))}, ${ts(at(1 * HOUR))})`,
        payloadRow('Grant', GRANT_V2, PAYLOAD.grantV2, { accountId: ALICE.id, clientId: CIMD, expiresAt: at(9 * DAY) }),
        payloadRow('RefreshToken', sha256b64u(RT_V2), PAYLOAD.refreshV2, { grantId: GRANT_V2, accountId: ALICE.id, clientId: CIMD, expiresAt: at(9 * DAY) }),
      ),
  },
  {
    // Client approval: the administrator approves the old confidential client (the public one is
    // left as the migration put it); new clients arrive approved, pending and rejected; the
    // metadata-document client gets its row.
    migration: '0003_client_approval',
    seed: (db) =>
      run(
        db,
        sql`UPDATE clients SET status = 'approved', ceiling = ${json({ [NOTES]: ['notes:read'] })}, status_changed_at = ${ts(at(-7 * DAY))},
              status_changed_by = 'cli:ops', updated_at = ${ts(at(-7 * DAY))}, last_used_at = ${ts(at(-1 * DAY))}
            WHERE client_id = ${CONF_V1}`,
        sql`INSERT INTO clients (client_id, metadata, client_secret_enc, status, registration_method, source_ip, user_agent, ceiling,
                                 status_reason, status_changed_at, status_changed_by, requested, created_at, updated_at)
            VALUES (${APPROVED_V3}, ${json(META[APPROVED_V3])}, ${ENC_V3}, 'approved', 'dcr', '198.51.100.7', 'team-assistant/2.0',
                    ${json({ [NOTES]: ['notes:read', 'notes:write'] })}, NULL, ${ts(at(-19 * DAY))}, 'cli:ops',
                    ${json({ '*': ['notes:read'] })}, ${ts(at(-20 * DAY))}, ${ts(at(-19 * DAY))})`,
        sql`INSERT INTO clients (client_id, metadata, source_ip, user_agent, requested, created_at, updated_at)
            VALUES (${PENDING_V3}, ${json(META[PENDING_V3])}, '203.0.113.50', 'curl/8.5.0',
                    ${json({ '*': ['notes:read'], [NOTES]: ['notes:read', 'notes:write'] })}, ${ts(at(-2 * DAY))}, ${ts(at(-2 * DAY))})`,
        sql`INSERT INTO clients (client_id, metadata, status, status_reason, status_changed_at, status_changed_by, created_at, updated_at)
            VALUES (${REJECTED_V3}, ${json(META[REJECTED_V3])}, 'rejected', 'unknown vendor', ${ts(at(-3 * DAY + HOUR))}, 'cli:ops',
                    ${ts(at(-3 * DAY))}, ${ts(at(-3 * DAY + HOUR))})`,
        sql`INSERT INTO clients (client_id, metadata, status, registration_method, ceiling, approved_redirect_uris, status_reason, created_at, updated_at)
            VALUES (${CIMD}, ${json(CIMD_DOCUMENT)}, 'approved', 'cimd', NULL, ${json(CIMD_DOCUMENT.redirect_uris)},
                    'approved on arrival: app.example.com is a trusted metadata-document host', ${ts(at(-4 * DAY))}, ${ts(at(-4 * DAY))})`,
      ),
  },
  {
    // An administrator with a console session and API tokens, audit events, sign-in lockouts,
    // a rate-limit counter.
    migration: '0004_audit_and_admins',
    seed: (db) =>
      run(
        db,
        sql`INSERT INTO accounts (id, email, password_hash, role, created_at, updated_at)
            VALUES (${ADMIN.id}, ${ADMIN.email}, ${fixtures.adminHash}, 'admin', ${ts(at(-6 * DAY))}, ${ts(at(-6 * DAY))})`,
        sql`INSERT INTO audit_events (occurred_at, event, actor, client_id, source_ip, user_agent, request_id, details)
            VALUES (${ts(at(-6 * DAY))}, 'client.registered', ${`client:${PENDING_V3}`}, ${PENDING_V3}, '203.0.113.50', 'curl/8.5.0', 'req-1',
                    ${json({ client_name: 'Unknown Tool', redirect_uris: META[PENDING_V3]!.redirect_uris, status: 'pending' })})`,
        sql`INSERT INTO audit_events (occurred_at, event, actor, account_id, source_ip, request_id, details)
            VALUES (${ts(at(-5 * DAY))}, 'admin.sign_in_succeeded', ${`admin:${ADMIN.email}`}, ${ADMIN.id}, '192.0.2.1', 'req-2', '{}'::jsonb)`,
        sql`INSERT INTO audit_events (occurred_at, event, actor, client_id, account_id, resource, details)
            VALUES (${ts(at(-4 * DAY))}, 'token.issued', ${`user:${ALICE.id}`}, ${CONF_V1}, ${ALICE.id}, ${NOTES}, ${json({ scope: 'notes:read', grant_type: 'authorization_code' })})`,
        sql`INSERT INTO admin_sessions (id, account_id, csrf_token, created_at, last_seen_at, expires_at)
            VALUES (${sha256b64u(ADMIN_COOKIE)}, ${ADMIN.id}, ${ADMIN_CSRF}, ${ts(at(-10 * MINUTE))}, ${ts(at(-1 * MINUTE))}, ${ts(at(30 * MINUTE))})`,
        sql`INSERT INTO sign_in_attempts (key, failures, updated_at) VALUES (${`user-account:${ALICE.email.toLowerCase()}`}, 2, ${ts(at(-5 * MINUTE))})`,
        sql`INSERT INTO sign_in_attempts (key, failures, locked_until, updated_at)
            VALUES ('user-ip:203.0.113.9', 25, ${ts(at(10 * MINUTE))}, ${ts(at(-1 * MINUTE))})`,
        sql`INSERT INTO admin_api_tokens (id, account_id, name, token_digest, created_at, last_used_at)
            VALUES (${PAT_ACTIVE_ID}, ${ADMIN.id}, 'terraform', ${sha256b64u(PAT_ACTIVE)}, ${ts(at(-5 * DAY))}, ${ts(at(-1 * HOUR))})`,
        sql`INSERT INTO admin_api_tokens (id, account_id, name, token_digest, created_at, revoked_at)
            VALUES (${PAT_REVOKED_ID}, ${ADMIN.id}, 'old laptop', ${sha256b64u(PAT_REVOKED)}, ${ts(at(-6 * DAY))}, ${ts(at(-5 * DAY))})`,
        sql`INSERT INTO rate_limit_counters (key, window_start, hits) VALUES ('cimd-fetch:app.example.com', ${ts(at(-10 * SECOND))}, 3)`,
      ),
  },
  {
    // Audit rows now go through the hash chain; a confidential client registered now has its
    // secret stored as a SHA-256 digest.
    migration: '0005_audit_chain',
    seed: (db) =>
      run(
        db,
        sql`INSERT INTO audit_events (occurred_at, event, actor, client_id, details)
            VALUES (${ts(at(-3 * DAY + HOUR))}, 'client.rejected', 'cli:ops', ${REJECTED_V3}, ${json({ reason: 'unknown vendor', previous_status: 'pending' })})`,
        sql`INSERT INTO audit_events (event, actor, account_id, details)
            VALUES ('user.sign_in_failed', NULL, NULL, ${json({ email: 'mallory@example.com' })})`,
        sql`INSERT INTO clients (client_id, metadata, client_secret_hash, status, ceiling, status_changed_at, status_changed_by, created_at, updated_at)
            VALUES (${CONF_V5}, ${json(META[CONF_V5])}, ${sha256hex(SECRET_V5)}, 'approved', ${json({ [NOTES]: ['notes:read'] })},
                    ${ts(at(-9 * DAY))}, ${`admin:${ADMIN.email}`}, ${ts(at(-10 * DAY))}, ${ts(at(-9 * DAY))})`,
      ),
  },
  {
    // A rotation in progress (as keys.service.ts `rotate` leaves it), and a key rotated out long ago.
    migration: '0006_key_rotation',
    seed: (db) =>
      run(
        db,
        sql`INSERT INTO keys (kid, use, alg, public_jwk, private_enc, created_at, retired_at, unpublish_at)
            VALUES (${fixtures.gone.kid}, 'sig', 'ES256', ${json(fixtures.gone.publicJwk)}, ${fixtures.gone.enc}, ${ts(at(-200 * DAY))},
                    ${ts(at(-150 * DAY))}, ${ts(at(-149 * DAY))})`,
        sql`INSERT INTO keys (kid, use, alg, public_jwk, private_enc, created_at, activates_at)
            VALUES (${fixtures.k2.kid}, 'sig', 'ES256', ${json(fixtures.k2.publicJwk)}, ${fixtures.k2.enc}, ${ts(at(-1 * MINUTE))}, ${ts(at(1 * HOUR))})`,
        sql`UPDATE keys SET retired_at = ${ts(at(1 * HOUR))}, unpublish_at = ${ts(at(1 * HOUR + 16 * MINUTE))}
            WHERE use = 'sig' AND kid <> ${fixtures.k2.kid} AND retired_at IS NULL`,
      ),
  },
  {
    // A public client registered with its metadata fingerprint.
    migration: '0007_client_recognition',
    seed: (db) =>
      run(
        db,
        sql`INSERT INTO clients (client_id, metadata, source_ip, user_agent, requested, metadata_fingerprint, created_at, updated_at)
            VALUES (${PUBLIC_V7}, ${json(META[PUBLIC_V7])}, '198.51.100.23', 'editor-plugin/1.4.2', ${json({ '*': ['notes:read'] })},
                    ${fingerprintAtV7(META[PUBLIC_V7]!)}, ${ts(at(-1 * DAY))}, ${ts(at(-1 * DAY))})`,
      ),
  },
  {
    // A code exchange written as one gated statement (src/db/unit-of-work.ts): it consumes the
    // code, stores the refresh token and the audit row. Replaying it must change nothing.
    migration: '0008_write_gate',
    seed: async (db) => {
      await payloadRow('AuthorizationCode', sha256b64u(CODE_V8), PAYLOAD.codeV8, {
        grantId: GRANT_V8, accountId: ALICE.id, clientId: APPROVED_V3, expiresAt: at(10 * MINUTE),
      }).execute(db);
      const redeem = (refreshToken: string) => sql`
        WITH w0 AS (UPDATE oidc_payloads SET consumed_at = now()
                    WHERE model = 'AuthorizationCode' AND id = ${sha256b64u(CODE_V8)} AND consumed_at IS NULL RETURNING id),
             w1 AS (INSERT INTO oidc_payloads (model, id, payload, grant_id, account_id, client_id, expires_at)
                    VALUES ('RefreshToken', ${sha256b64u(refreshToken)}, ${json(PAYLOAD.refreshV8)}, ${GRANT_V8}, ${ALICE.id}, ${APPROVED_V3}, ${ts(at(14 * DAY))})
                    RETURNING id),
             w2 AS (INSERT INTO audit_events (event, actor, client_id, account_id, resource, details)
                    VALUES ('token.issued', ${`user:${ALICE.id}`}, ${APPROVED_V3}, ${ALICE.id}, ${NOTES}, ${json({ scope: 'notes:read', grant_type: 'authorization_code' })})
                    RETURNING id)
        SELECT gatehouse_assert(EXISTS (SELECT 1 FROM w0), 'grant already used') AS g0`;
      await redeem(RT_V8).execute(db);
      await expect(redeem(token()).execute(db)).rejects.toMatchObject({ code: 'GH001', message: 'grant already used' });
    },
  },
  {
    // Audit rows as 0009's writers append them: the application's MAC, no chain, no lock. Whatever
    // a writer sends for id, occurred_at or the old chain columns, the trigger stamps its own; two
    // audit rows may share one statement (a token request's batch).
    migration: '0009_audit_seal',
    seed: (db) =>
      run(
        db,
        sql`INSERT INTO audit_events (occurred_at, event, actor, client_id, details, prev_hash, hash, mac)
            VALUES ('2001-01-01T00:00:00Z', 'client.approved', ${`admin:${ADMIN.email}`}, ${PENDING_V3}, ${json({ ceiling: { [NOTES]: ['notes:read'] } })},
                    'not-the-chain', 'not-a-hash',
                    ${macAtV9({ event: 'client.approved', actor: `admin:${ADMIN.email}`, client_id: PENDING_V3, details: { ceiling: { [NOTES]: ['notes:read'] } } })})`,
        sql`WITH w0 AS (INSERT INTO audit_events (event, actor, client_id, account_id, resource, details, mac)
                        VALUES ('token.refreshed', ${`user:${ALICE.id}`}, ${APPROVED_V3}, ${ALICE.id}, ${NOTES}, ${json({ scope: 'notes:read', grant_type: 'refresh_token' })},
                                ${macAtV9({ event: 'token.refreshed', actor: `user:${ALICE.id}`, client_id: APPROVED_V3, account_id: ALICE.id, resource: NOTES, details: { scope: 'notes:read', grant_type: 'refresh_token' } })})
                        RETURNING id),
                 w1 AS (INSERT INTO audit_events (event, actor, details, mac)
                        VALUES ('user.sign_in_failed', NULL, ${json({ email: 'mallory@example.com' })}, ${macAtV9({ event: 'user.sign_in_failed', details: { email: 'mallory@example.com' } })})
                        RETURNING id)
            SELECT (SELECT count(*) FROM w0) + (SELECT count(*) FROM w1) AS n`,
      ),
  },
  {
    // A refresh as 0010's code writes it: the consumed token, and its successor naming it in
    // `rotated_from` (rotation grace finds it so). The commit deadline refuses a commit too late.
    migration: '0010_rotation_grace',
    seed: async (db) => {
      await payloadRow('RefreshToken', sha256b64u(RT_V10_OLD), PAYLOAD.refreshV8, {
        grantId: GRANT_V8, accountId: ALICE.id, clientId: APPROVED_V3, expiresAt: at(14 * DAY),
      }).execute(db);
      await run(
        db,
        sql`UPDATE oidc_payloads SET consumed_at = ${ts(at(-10 * SECOND))} WHERE model = 'RefreshToken' AND id = ${sha256b64u(RT_V10_OLD)}`,
        sql`INSERT INTO oidc_payloads (model, id, payload, grant_id, account_id, client_id, expires_at, rotated_from)
            VALUES ('RefreshToken', ${sha256b64u(RT_V10_NEW)}, ${json(PAYLOAD.refreshV8)}, ${GRANT_V8}, ${ALICE.id}, ${APPROVED_V3}, ${ts(at(14 * DAY))}, ${sha256b64u(RT_V10_OLD)})`,
      );
      await expect(sql`SELECT gatehouse_commit_by(now() - interval '1 second')`.execute(db)).rejects.toMatchObject({ code: 'GH002' });
      await expect(sql`SELECT gatehouse_commit_by(clock_timestamp() + interval '1 minute', 3)`.execute(db)).resolves.toBeDefined();
    },
  },
];

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

test('every migration file has a step with representative rows in this test', async () => {
  const onDisk = (await readdir(MIGRATIONS_DIR))
    .filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f))
    .map((f) => f.replace(/\.sql$/, ''))
    .sort();
  const covered = STEPS.map((s) => s.migration);
  const missing = onDisk.filter((m) => !covered.includes(m));
  expect(
    missing,
    `test/contract/migrations-data.test.ts has no step for ${missing.join(', ')}: add one to STEPS that inserts rows typical of a ` +
      'deployment at that version (and any rows whose shape it changes), and check at the end that they survive with the values it gives them',
  ).toEqual([]);
  expect(covered, 'STEPS must list the migrations in the order they are applied, once each').toEqual(onDisk);
});

/**
 * Landed migrations are frozen: a database that applied one never runs it again, so an edit reaches
 * new databases only and the two silently differ (this happened to 0003–0005 before this check).
 * Change the schema with a new migration; add its digest here when it lands.
 */
const FROZEN: Record<string, string> = {
  '0001_initial.sql': 'e13c7ec976a91239',
  '0002_client_metadata_documents.sql': 'fa51ea43883a6475',
  '0003_client_approval.sql': '116d673909f32ca2',
  '0004_audit_and_admins.sql': '0784cd04d0a7c7c4',
  '0005_audit_chain.sql': '00f0b7b4e8cee1f1',
  '0006_key_rotation.sql': '9204a1226c0374e3',
  '0007_client_recognition.sql': '468ac3014221c78e',
  '0008_write_gate.sql': 'c2bcec3b949174db',
  '0009_audit_seal.sql': '30599a56b674f566',
  '0010_rotation_grace.sql': '9819e0248df46ead',
};

test('landed migrations are unchanged, byte for byte', async () => {
  const { readFile } = await import('node:fs/promises');
  const files = (await readdir(MIGRATIONS_DIR)).filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f)).sort();
  for (const file of files) {
    const digest = createHash('sha256').update(await readFile(`${MIGRATIONS_DIR}${file}`)).digest('hex').slice(0, 16);
    expect(FROZEN[file], `${file} is not in FROZEN: add '${file}': '${digest}' once it lands`).toBeDefined();
    expect(digest, `${file} was edited after it landed: put the change in a new migration instead`).toBe(FROZEN[file]);
  }
});

describe.each(['postgres', 'pglite'] as const)('migrations with data (%s)', (kind) => {
  let handle: DatabaseHandle;
  let db: DB;
  let drop = async () => {};

  beforeAll(async () => {
    if (kind === 'postgres') {
      const created = await createEmptyPostgresDatabase();
      drop = created.drop;
      handle = await openDatabase({ url: created.url, poolSize: 2 });
    } else {
      handle = await openDatabase({ dataDir: 'memory://' });
    }
    db = handle.db;
    await sql`SELECT 1`.execute(db); // PGlite starts on first use: seconds, not part of any step

  });
  afterAll(async () => {
    await handle?.close();
    await drop();
  });

  for (const step of STEPS) {
    test(`${step.migration} applies on top of the previous versions' rows, then takes rows typical of it`, async () => {
      const { error, results } = await createMigrator(db).migrateUp();
      expect(error).toBeUndefined();
      expect(results).toEqual([{ migrationName: step.migration, direction: 'Up', status: 'Success' }]);
      await step.seed(db);
    });
  }

  test('the schema is current: nothing pending, nothing unknown', async () => {
    expect(await schemaStatus(db)).toEqual({ pending: [], unknown: [] });
    const { error, results } = await createMigrator(db).migrateUp();
    expect(error).toBeUndefined();
    expect(results).toEqual([]);
  });

  describe('the rows survive, with the values later migrations give them', () => {
    test('clients: columns added by 0003, 0005 and 0007 take their defaults on older rows; nothing is lost', async () => {
      const { rows } = await sql<Record<string, unknown>>`
        SELECT client_id, metadata, client_secret_enc, client_secret_hash, status, registration_method, source_ip, user_agent,
               ceiling, approved_redirect_uris, status_reason, status_changed_at, status_changed_by, last_used_at, requested,
               metadata_fingerprint, created_at
        FROM clients ORDER BY client_id`.execute(db);
      const byId = Object.fromEntries(rows.map((r) => [r.client_id as string, r]));
      expect(Object.keys(byId).sort()).toEqual([APPROVED_V3, CONF_V1, CONF_V5, PENDING_V3, PUBLIC_V1, PUBLIC_V7, REJECTED_V3, CIMD].sort());

      // Registered at v1 and never touched since: 0003 made it a pending DCR client with an empty
      // ceiling (`{}`, not NULL: nothing until an administrator decides); 0005 and 0007 did not
      // backfill a secret digest or a fingerprint.
      expect(byId[PUBLIC_V1]).toEqual({
        client_id: PUBLIC_V1, metadata: META[PUBLIC_V1], client_secret_enc: null, client_secret_hash: null,
        status: 'pending', registration_method: 'dcr', source_ip: null, user_agent: null, ceiling: {}, approved_redirect_uris: null,
        status_reason: null, status_changed_at: null, status_changed_by: null, last_used_at: null, requested: {},
        metadata_fingerprint: null, created_at: at(-45 * DAY),
      });
      // v1's confidential client keeps its encrypted secret (0005 adds the digest column only).
      expect(byId[CONF_V1]).toMatchObject({
        metadata: META[CONF_V1], client_secret_enc: ENC_V1, client_secret_hash: null, status: 'approved', registration_method: 'dcr',
        ceiling: { [NOTES]: ['notes:read'] }, requested: {}, status_changed_by: 'cli:ops', status_changed_at: at(-7 * DAY),
        last_used_at: at(-1 * DAY), metadata_fingerprint: null, created_at: at(-60 * DAY),
      });
      expect(byId[APPROVED_V3]).toMatchObject({
        client_secret_enc: ENC_V3, client_secret_hash: null, status: 'approved', source_ip: '198.51.100.7', user_agent: 'team-assistant/2.0',
        ceiling: { [NOTES]: ['notes:read', 'notes:write'] }, requested: { '*': ['notes:read'] }, metadata_fingerprint: null,
      });
      expect(byId[PENDING_V3]).toMatchObject({
        status: 'pending', ceiling: {}, requested: { '*': ['notes:read'], [NOTES]: ['notes:read', 'notes:write'] }, metadata_fingerprint: null,
      });
      expect(byId[REJECTED_V3]).toMatchObject({ status: 'rejected', status_reason: 'unknown vendor', status_changed_by: 'cli:ops' });
      expect(byId[CIMD]).toMatchObject({
        metadata: CIMD_DOCUMENT, status: 'approved', registration_method: 'cimd', ceiling: null,
        approved_redirect_uris: CIMD_DOCUMENT.redirect_uris, metadata_fingerprint: null,
      });
      expect(byId[CONF_V5]).toMatchObject({ client_secret_enc: null, client_secret_hash: sha256hex(SECRET_V5), status: 'approved' });
      expect(byId[PUBLIC_V7]).toMatchObject({ metadata: META[PUBLIC_V7], metadata_fingerprint: fingerprintAtV7(META[PUBLIC_V7]!), status: 'pending' });
    });

    test('oidc_payloads: every row, payload and column is as stored', async () => {
      const { rows } = await sql<{ model: string; id: string; payload: unknown; grant_id: string | null; uid: string | null; account_id: string | null; client_id: string | null; expires_at: Date | null; consumed_at: Date | null }>`
        SELECT model, id, payload, grant_id, uid, account_id, client_id, expires_at, consumed_at FROM oidc_payloads ORDER BY model, id`.execute(db);
      const find = (model: string, id: string) => rows.find((r) => r.model === model && r.id === id);
      expect(rows.map((r) => r.model).sort()).toEqual(
        ['AuthorizationCode', 'AuthorizationCode', 'Grant', 'Grant', 'Interaction', 'RefreshToken', 'RefreshToken', 'RefreshToken', 'RefreshToken', 'RefreshToken', 'RegistrationAccessToken', 'Session'],
      );
      expect(find('Session', SESSION_V1.id)).toEqual({
        model: 'Session', id: SESSION_V1.id, payload: PAYLOAD.session, grant_id: null, uid: SESSION_V1.uid, account_id: ALICE.id,
        client_id: null, expires_at: at(12 * DAY), consumed_at: null,
      });
      expect(find('Grant', GRANT_V1)).toMatchObject({ payload: PAYLOAD.grant, account_id: ALICE.id, client_id: CONF_V1, expires_at: at(12 * DAY) });
      expect(find('RefreshToken', sha256b64u(RT_V1))).toMatchObject({ payload: PAYLOAD.refresh, grant_id: GRANT_V1, consumed_at: null });
      expect(find('AuthorizationCode', sha256b64u(CODE_V1))).toMatchObject({ payload: PAYLOAD.code, consumed_at: at(-30 * SECOND) });
      expect(find('RegistrationAccessToken', sha256b64u(RAT_V1))).toMatchObject({ payload: PAYLOAD.registration, expires_at: null });
      expect(find('Interaction', INTERACTION_V1)).toMatchObject({ payload: PAYLOAD.interaction, expires_at: at(-1 * HOUR) });
      expect(find('Grant', GRANT_V2)).toMatchObject({ payload: PAYLOAD.grantV2, client_id: CIMD });
      expect(find('RefreshToken', sha256b64u(RT_V2))).toMatchObject({ payload: PAYLOAD.refreshV2, grant_id: GRANT_V2 });
      expect(find('AuthorizationCode', sha256b64u(CODE_V8))?.consumed_at).toBeInstanceOf(Date);
      expect(find('RefreshToken', sha256b64u(RT_V8))).toMatchObject({ payload: PAYLOAD.refreshV8, client_id: APPROVED_V3, account_id: ALICE.id });
      // 0010: rows from before it name no predecessor and have no grace spent; a rotation's successor names its parent.
      const rotation = await sql<{ id: string; rotated_from: string | null; reused_at: Date | null }>`
        SELECT id, rotated_from, reused_at FROM oidc_payloads WHERE model = 'RefreshToken' ORDER BY id`.execute(db);
      for (const row of rotation.rows) {
        expect(row.reused_at).toBeNull();
        expect(row.rotated_from).toBe(row.id === sha256b64u(RT_V10_NEW) ? sha256b64u(RT_V10_OLD) : null);
      }
    });

    test('accounts, resources, metadata documents: unchanged; 0004 gave the old accounts the user role', async () => {
      const accounts = await sql<Record<string, unknown>>`SELECT id, email, password_hash, disabled_at, role, created_at FROM accounts ORDER BY email`.execute(db);
      expect(accounts.rows).toEqual([
        { id: ALICE.id, email: ALICE.email, password_hash: fixtures.aliceHash, disabled_at: null, role: 'user', created_at: at(-90 * DAY) },
        { id: BOB.id, email: BOB.email, password_hash: fixtures.bobHash, disabled_at: at(-10 * DAY), role: 'user', created_at: at(-80 * DAY) },
        { id: ADMIN.id, email: ADMIN.email, password_hash: fixtures.adminHash, disabled_at: null, role: 'admin', created_at: at(-6 * DAY) },
      ]);
      const resources = await sql<Record<string, unknown>>`SELECT id, uri, name, scopes, default_scopes, access_token_ttl FROM resources`.execute(db);
      expect(resources.rows).toEqual([{ id: RESOURCE_ID, uri: NOTES, name: 'Notes', scopes: NOTES_SCOPES, default_scopes: ['notes:read'], access_token_ttl: 900 }]);
      const documents = await sql<Record<string, unknown>>`SELECT client_id, document, fetched_at, expires_at FROM client_metadata_documents`.execute(db);
      expect(documents.rows).toEqual([{ client_id: CIMD, document: CIMD_DOCUMENT, fetched_at: at(-5 * MINUTE), expires_at: at(1 * HOUR) }]);
    });

    test('keys: 0006 leaves activates_at and unpublish_at empty on older keys', async () => {
      const { rows } = await sql<Record<string, unknown>>`
        SELECT kid, use, private_enc, created_at, retired_at, activates_at, unpublish_at FROM keys ORDER BY created_at`.execute(db);
      const byKid = Object.fromEntries(rows.map((r) => [r.kid as string, r]));
      expect(rows).toHaveLength(6);
      // Retired before 0006 (when retired meant "gone from the JWKS"): no unpublish_at.
      expect(byKid[fixtures.k0.kid]).toMatchObject({ private_enc: fixtures.k0.enc, retired_at: at(-30 * DAY), activates_at: null, unpublish_at: null });
      expect(byKid[fixtures.k1.kid]).toMatchObject({ private_enc: fixtures.k1.enc, retired_at: at(1 * HOUR), activates_at: null, unpublish_at: at(HOUR + 16 * MINUTE) });
      expect(byKid[fixtures.k2.kid]).toMatchObject({ activates_at: at(1 * HOUR), retired_at: null, unpublish_at: null });
      expect(byKid[OLD_COOKIE_KEY.kid]).toMatchObject({ use: 'cookie', retired_at: at(-30 * DAY), activates_at: null, unpublish_at: null });
      expect(byKid[COOKIE_KEY.kid]).toMatchObject({ use: 'cookie', retired_at: null, activates_at: null, unpublish_at: null });
    });

    test('audit_events: rows from before 0005 have no hash, 0005–0008 rows are chained, 0009 rows carry a MAC and the trigger\'s stamps', async () => {
      const { rows } = await sql<{ id: string; event: string; client_id: string | null; details: unknown; prev_hash: string | null; hash: string | null; txid: string | null; mac: string | null; occurred_at: Date }>`
        SELECT a.id::text AS id, a.event, a.client_id, a.details, a.prev_hash, a.hash, a.txid::text AS txid, a.mac, a.occurred_at FROM audit_events a ORDER BY a.id`.execute(db);
      expect(rows.slice(0, 7).map((r) => r.event)).toEqual([
        'client.registered', 'admin.sign_in_succeeded', 'token.issued', // 0004
        'client.rejected', 'user.sign_in_failed', // 0005
        'token.issued', // 0008, with the code exchange
        'client.approved', // 0009
      ]);
      // The two rows of one statement (0009): in either order.
      expect(rows.slice(7).map((r) => r.event).sort()).toEqual(['token.refreshed', 'user.sign_in_failed']);
      expect(rows[0]).toMatchObject({ client_id: PENDING_V3, details: { client_name: 'Unknown Tool', redirect_uris: META[PENDING_V3]!.redirect_uris, status: 'pending' } });
      expect(rows.slice(0, 3).map((r) => [r.prev_hash, r.hash])).toEqual([[null, null], [null, null], [null, null]]);
      // The first chained row starts from 'genesis' (the last row before it has no hash).
      expect(rows[3]!.prev_hash).toBe('genesis');
      expect(rows[4]!.prev_hash).toBe(rows[3]!.hash);
      expect(rows[5]!.prev_hash).toBe(rows[4]!.hash);
      for (const r of rows.slice(3, 6)) expect(r.hash).toMatch(/^[0-9a-f]{64}$/);
      // 0009 added txid and mac empty on every older row.
      for (const r of rows.slice(0, 6)) expect([r.txid, r.mac]).toEqual([null, null]);
      // Since 0009: the writer's MAC; the trigger's id, txid and time, whatever the writer sent; no chain.
      for (const r of rows.slice(6)) {
        expect(r.mac).toMatch(/^[0-9a-f]{16}\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}$/);
        expect(r.txid).toMatch(/^\d+$/);
        expect([r.prev_hash, r.hash]).toEqual([null, null]);
        expect(r.occurred_at.getTime()).toBeGreaterThan(T0 - HOUR);
      }
      // Still append-only; and the runtime role may only read and append (where roles exist: both here).
      await expect(sql`UPDATE audit_events SET event = 'edited' WHERE id = ${rows[0]!.id}::bigint`.execute(db)).rejects.toThrow(/append-only/);
      const grants = await sql<Record<string, boolean>>`
        SELECT has_table_privilege('gatehouse_runtime', 'audit_events', 'INSERT') AS append,
               has_table_privilege('gatehouse_runtime', 'audit_events', 'UPDATE') AS change,
               has_table_privilege('gatehouse_runtime', 'audit_checkpoints', 'DELETE') AS remove,
               has_table_privilege('gatehouse_runtime', 'clients', 'UPDATE') AS clients`.execute(db);
      expect(grants.rows).toEqual([{ append: true, change: false, remove: false, clients: true }]);
    });

    test('admin sessions, API tokens, sign-in attempts, rate-limit counters: unchanged', async () => {
      const sessions = await sql<Record<string, unknown>>`SELECT id, account_id, csrf_token, expires_at FROM admin_sessions`.execute(db);
      expect(sessions.rows).toEqual([{ id: sha256b64u(ADMIN_COOKIE), account_id: ADMIN.id, csrf_token: ADMIN_CSRF, expires_at: at(30 * MINUTE) }]);
      const tokens = await sql<Record<string, unknown>>`SELECT id, account_id, name, token_digest, revoked_at FROM admin_api_tokens ORDER BY name`.execute(db);
      expect(tokens.rows).toEqual([
        { id: PAT_REVOKED_ID, account_id: ADMIN.id, name: 'old laptop', token_digest: sha256b64u(PAT_REVOKED), revoked_at: at(-5 * DAY) },
        { id: PAT_ACTIVE_ID, account_id: ADMIN.id, name: 'terraform', token_digest: sha256b64u(PAT_ACTIVE), revoked_at: null },
      ]);
      const attempts = await sql<Record<string, unknown>>`SELECT key, failures, locked_until FROM sign_in_attempts ORDER BY key`.execute(db);
      expect(attempts.rows).toEqual([
        { key: 'user-account:alice@example.com', failures: 2, locked_until: null },
        { key: 'user-ip:203.0.113.9', failures: 25, locked_until: at(10 * MINUTE) },
      ]);
      const counters = await sql<Record<string, unknown>>`SELECT key, window_start, hits FROM rate_limit_counters`.execute(db);
      expect(counters.rows).toEqual([{ key: 'cimd-fetch:app.example.com', window_start: at(-10 * SECOND), hits: 3 }]);
    });
  });

  describe('the current application code reads the old rows', () => {
    test('clients repository: statuses, ceilings and what each client asked for', async () => {
      const clients = createClientsRepository(db);
      expect(await clients.get(PUBLIC_V1)).toMatchObject({
        clientId: PUBLIC_V1, name: 'Desktop Agent', status: 'pending', registrationMethod: 'dcr', ceiling: {}, requested: {},
        redirectUris: ['http://127.0.0.1:33418/callback'], statusChangedAt: null, createdAt: at(-45 * DAY),
      });
      expect(await clients.get(CONF_V1)).toMatchObject({ name: 'Notes Sync', status: 'approved', ceiling: { [NOTES]: ['notes:read'] } });
      expect((await clients.list({ status: 'pending' })).map((c) => c.clientId)).toEqual([PUBLIC_V7, PENDING_V3, PUBLIC_V1]);
      expect((await clients.list({ status: 'rejected' })).map((c) => c.clientId)).toEqual([REJECTED_V3]);
      expect(await clients.countPending()).toBe(3);
      expect(await clients.policy(CIMD)).toEqual({ status: 'approved', ceiling: null });
      expect(await clients.usage(CONF_V1)).toEqual({ activeGrants: 1, lastTokenAt: at(-4 * DAY) });
      expect((await clients.usage(APPROVED_V3)).lastTokenAt).toBeInstanceOf(Date);

      // The v7 fingerprint is still the current algorithm's: a re-registration is recognised.
      expect(metadataFingerprint(META[PUBLIC_V7]!)).toBe(fingerprintAtV7(META[PUBLIC_V7]!));
      expect(await clients.findRecognisable(metadataFingerprint(META[PUBLIC_V7]!)!, 'a-new-registration')).toMatchObject({ client_id: PUBLIC_V7, status: 'pending' });
      // 0007 did not backfill fingerprints: a public client registered before it is never recognised.
      expect(await clients.findRecognisable(metadataFingerprint(META[PUBLIC_V1]!)!, 'a-new-registration')).toBeUndefined();
    });

    test('oidc adapter: clients, with secrets from before and after 0005', async () => {
      const adapterFor = createAdapterFactory({
        db,
        secretBox: box,
        clients: createClientsRepository(db),
        trustPolicy: createTrustPolicy({ approval: 'manual', trustedDocumentHosts: [], trustedCeiling: 'defaults', defaultScopes: async () => [] }),
      });
      const client = adapterFor('Client');
      const v1 = await client.find(CONF_V1);
      expect(v1).toEqual({ ...META[CONF_V1], client_secret: SECRET_V1 });
      expect(await client.find(APPROVED_V3)).toEqual({ ...META[APPROVED_V3], client_secret: SECRET_V3 });
      const v5 = await client.find(CONF_V5);
      expect(v5).toEqual({ ...META[CONF_V5], client_secret: `sha256:${sha256hex(SECRET_V5)}` });
      expect(await client.find(PUBLIC_V1)).toEqual(META[PUBLIC_V1]);
      expect(await client.find(PUBLIC_V7)).toEqual(META[PUBLIC_V7]);

      // Both kinds of stored secret authenticate the client (and nothing else does).
      class FakeClient {
        constructor(readonly clientSecret: string) {}
      }
      installHashedClientSecrets(FakeClient);
      const compare = (stored: AdapterPayload | undefined | void, presented: string) =>
        (new FakeClient(String(stored?.client_secret)) as unknown as { compareClientSecret(s: string): boolean }).compareClientSecret(presented);
      expect(compare(v1, SECRET_V1)).toBe(true);
      expect(compare(v5, SECRET_V5)).toBe(true);
      expect(compare(v1, SECRET_V5)).toBe(false);
      expect(compare(v5, `sha256:${sha256hex(SECRET_V5)}`)).toBe(false);
    });

    test('oidc adapter: sessions, grants, codes and tokens stored by older versions', async () => {
      const adapterFor = createAdapterFactory({ db, secretBox: box });
      expect(await adapterFor('Session').find(SESSION_V1.id)).toEqual(PAYLOAD.session);
      expect(await adapterFor('Session').findByUid(SESSION_V1.uid)).toEqual(PAYLOAD.session);
      expect(await adapterFor('Grant').find(GRANT_V1)).toEqual(PAYLOAD.grant);
      expect(await adapterFor('Grant').find(GRANT_V2)).toEqual(PAYLOAD.grantV2);
      expect(await adapterFor('RegistrationAccessToken').find(RAT_V1)).toEqual({ ...PAYLOAD.registration, jti: RAT_V1 });
      expect(await adapterFor('AuthorizationCode').find(CODE_V1)).toEqual({ ...PAYLOAD.code, jti: CODE_V1, consumed: epoch(-30 * SECOND) });
      expect(await adapterFor('AuthorizationCode').find(CODE_V8)).toMatchObject({ jti: CODE_V8, consumed: expect.any(Number) });
      expect(await adapterFor('RefreshToken').find(RT_V8)).toEqual({ ...PAYLOAD.refreshV8, jti: RT_V8 });
      expect(await adapterFor('Interaction').find(INTERACTION_V1)).toBeUndefined(); // expired

      // An old refresh token is redeemed once, then reported consumed.
      const refresh = adapterFor('RefreshToken');
      expect(await refresh.find(RT_V1)).toEqual({ ...PAYLOAD.refresh, jti: RT_V1 });
      await refresh.consume(RT_V1);
      expect(await refresh.find(RT_V1)).toMatchObject({ jti: RT_V1, consumed: expect.any(Number) });
      await expect(refresh.consume(RT_V1)).rejects.toBeInstanceOf(errors.InvalidGrant);
    });

    test('metadata documents: the cached document is served without a fetch', async () => {
      const documents = createMetadataDocuments({
        db,
        fetch: () => Promise.reject(new Error('no fetch expected: the document is cached')),
        cacheBounds: { min: 60, max: 86_400 },
        fetchLimit: { perMinute: 10, limiter: createRateLimiter(db) },
      });
      expect(await documents.resolve(CIMD)).toEqual({ metadata: CIMD_DOCUMENT, fresh: false });
    });

    test('resources service: the old MCP server with its scopes', async () => {
      const resources = createResourcesService({ db });
      expect(await resources.list()).toEqual([
        { id: RESOURCE_ID, uri: NOTES, name: 'Notes', scopes: NOTES_SCOPES, defaultScopes: ['notes:read'], accessTokenTtl: 900, createdAt: at(-90 * DAY) },
      ]);
      expect((await resources.resolve('HTTPS://Notes.Example.com:443/mcp'))?.id).toBe(RESOURCE_ID);
      expect((await resources.find(RESOURCE_ID))?.uri).toBe(NOTES);
    });

    test('accounts service: old passwords verify; a disabled account stays disabled; roles', async () => {
      const accounts = createAccountsService({ db });
      expect(await accounts.authenticate('alice@example.com', ALICE.password)).toMatchObject({ id: ALICE.id, role: 'user' });
      expect(await accounts.authenticate('alice@example.com', 'not her password')).toBeUndefined();
      expect(await accounts.authenticate(BOB.email, BOB.password)).toBeUndefined();
      expect(await accounts.get(BOB.id)).toMatchObject({ email: BOB.email, disabledAt: at(-10 * DAY) });
      expect(await accounts.authenticate(ADMIN.email, ADMIN.password)).toMatchObject({ id: ADMIN.id, role: 'admin' });
      expect(await accounts.findActiveById(ALICE.id)).toEqual({ id: ALICE.id, email: ALICE.email });
      expect(await accounts.findActiveById(BOB.id)).toBeUndefined();
    });

    test('keys service: the old signing key signs until the rotation; old cookie key verifies', async () => {
      const keys = createKeysService({ db, secretBox: box });
      const material = await keys.load();
      // The key active since v1 signs first; the scheduled one is published; the one unpublished
      // by a completed rotation is not.
      expect(material.signing[0]).toEqual(fixtures.k1.full);
      const published = material.signing.map((k) => k.kid);
      expect(published).toContain(fixtures.k2.kid);
      expect(published).not.toContain(fixtures.gone.kid);
      // NOTE: a key retired before 0006 (retired_at set, unpublish_at empty) was out of the JWKS
      // then, and is published again now (0006 backfills no unpublish_at). Recorded as it is.
      expect(published).toContain(fixtures.k0.kid);
      expect(material.cookies).toEqual([COOKIE_KEY.secret]);
      const states = Object.fromEntries((await keys.list()).map((k) => [k.kid, k.state]));
      expect(states).toEqual({ [fixtures.k0.kid]: 'retired', [fixtures.k1.kid]: 'active', [fixtures.k2.kid]: 'next', [fixtures.gone.kid]: 'unpublished' });
      expect((await keys.ensure()).created).toEqual([]);
    });

    test('admin sessions, API tokens, sign-in lockouts and rate limits from v4 still work', async () => {
      expect(await createAdminSessions(db).find(ADMIN_COOKIE)).toEqual({ accountId: ADMIN.id, email: ADMIN.email, csrf: ADMIN_CSRF });
      const tokens = createApiTokens(db);
      expect(await tokens.authenticate(PAT_ACTIVE)).toEqual({ accountId: ADMIN.id, email: ADMIN.email, tokenName: 'terraform' });
      expect(await tokens.authenticate(PAT_REVOKED)).toBeUndefined();
      const throttle = createSignInThrottle(db);
      expect(await throttle.retryAfter(['user-account:alice@example.com'])).toBe(0);
      expect(await throttle.retryAfter(['user-account:alice@example.com', 'user-ip:203.0.113.9'])).toBeGreaterThan(500);
      // The counter continues its window (an hour here, so a slow run stays inside it): 3 hits before, this is the 4th.
      const limiter = createRateLimiter(db);
      expect(await limiter.hit('cimd-fetch:app.example.com', 4, 3600)).toEqual({ allowed: true, retryAfter: 0 });
      expect((await limiter.hit('cimd-fetch:app.example.com', 4, 3600)).allowed).toBe(false);
    });

    test('audit verification: old-chain rows (0005–0008) still verify by that chain, 0009 rows by their MACs; the first checkpoint covers both, so rewriting an old row later is caught', async () => {
      const keys = createAuditKeys(KEK);
      const before = await verifyAuditTrail(db, keys, { unsealedAfter: 3600 });
      expect(before.problems).toEqual([]);
      expect(before).toMatchObject({ events: 9, legacy: 6, sealed: 0, unsealed: 9, checkpoints: 0 });
      expect(before.notes).toEqual([expect.stringMatching(/^3 event\(s\) were written before migration 0005 and never had a hash chain/)]);

      const outcome = await createAuditSealer({ db, databaseUrl: undefined, keys }).seal();
      expect(outcome).toMatchObject({ ran: true, rows: 9, invalid: [] });
      expect(await verifyAuditTrail(db, keys, { unsealedAfter: 3600 })).toMatchObject({ sealed: 9, unsealed: 0, checkpoints: 1, problems: [] });

      // As the owner, rolled back afterwards: an old row edited, and the old chain recomputed from it
      // on, so that the old algorithm alone finds nothing wrong.
      class RolledBack extends Error {}
      const { rows: chained } = await sql<{ id: string }>`SELECT a.id::text AS id FROM audit_events a WHERE a.txid IS NULL AND a.hash IS NOT NULL ORDER BY a.id`.execute(db);
      const [edited, ...after] = chained.map((r) => r.id);
      let report: Awaited<ReturnType<typeof verifyAuditTrail>> | undefined;
      await expect(
        db.transaction().execute(async (trx) => {
          const rehash = (id: string) =>
            sql`UPDATE audit_events a SET hash = encode(sha256(convert_to(a.prev_hash || E'\\x1e' || audit_event_content(a), 'UTF8')), 'hex') WHERE a.id = ${id}::bigint`.execute(trx);
          await sql`ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_or_delete`.execute(trx);
          await sql`UPDATE audit_events SET details = ${json({ reason: 'approved after all' })} WHERE id = ${edited}::bigint`.execute(trx);
          await rehash(edited!);
          let previous = edited!;
          for (const id of after) {
            await sql`UPDATE audit_events SET prev_hash = (SELECT hash FROM audit_events WHERE id = ${previous}::bigint) WHERE id = ${id}::bigint`.execute(trx);
            await rehash(id);
            previous = id;
          }
          report = await verifyAuditTrail(trx, keys, { unsealedAfter: 3600 });
          throw new RolledBack();
        }),
      ).rejects.toBeInstanceOf(RolledBack);
      // The old chain is consistent again; the checkpoint's leaf hashes are not.
      expect(report!.problems.map((p) => [p.id, p.problem.replace(/:.*/, '')])).toEqual(
        [edited!, ...after].map((id) => [id, 'it was edited after checkpoint 1 sealed it']),
      );
      expect(await verifyAuditTrail(db, keys, { unsealedAfter: 3600 })).toMatchObject({ problems: [] });
    });
  });
});
