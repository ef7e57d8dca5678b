/**
 * The PostgreSQL adapter for every oidc-provider model.
 *
 * - Token-like ids (codes, refresh/access tokens, registration access tokens, …) are stored as
 *   their SHA-256 digest; the raw value appears nowhere in the row (`jti` is stripped and restored).
 * - `consume` is one conditional UPDATE: of two concurrent redemptions exactly one succeeds; the
 *   other gets `invalid_grant` (RFC 9700 §4.14.2, OAuth 2.1 §4.1.3 single use).
 * - `find` reports consumed rows as `consumed` (oidc-provider's reuse detection relies on it) and
 *   never returns expired rows.
 * - Clients live in their own table. A client secret is stored as its SHA-256 digest only; the
 *   provider compares presented secrets against it (see `installHashedClientSecrets`).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { sql } from 'kysely';
import { errors, type Adapter, type AdapterPayload } from 'oidc-provider';
import type { DB } from '../db/database.ts';
import { current, currentUnitOfWork, grantLockQuery, write, writeCompiled } from '../db/unit-of-work.ts';
import { inGraceSql, refreshRequest } from './rotation-grace.ts';
import type { SecretBox } from '../keys/secret-box.ts';
import { rememberClientPolicy } from '../clients/client-policy.ts';
import type { AuditLog } from '../audit/audit-log.ts';
import type { ClientsRepository } from '../clients/clients.repository.ts';
import { looksLikeClientIdUrl, MetadataDocumentError, type MetadataDocuments } from '../clients/metadata-documents.ts';
import type { TrustPolicy } from '../clients/trust-policy.ts';
import { metadataFingerprint, noteRecognised } from '../clients/recognition.ts';
import { requestContext } from '../http/request-context.ts';
import { asDate, forgetReadAhead, readAhead, readAheadKeys } from '../db/request-cache.ts';
import type { Selectable } from 'kysely';
import type { ClientsTable } from '../db/schema.ts';

type ClientsTableRow = Selectable<ClientsTable>;

/** Models whose ids are bearer secrets, stored only as digests. */
export const HASHED_MODELS = new Set([
  'AccessToken',
  'AuthorizationCode',
  'RefreshToken',
  'RegistrationAccessToken',
  'ClientCredentials',
  'InitialAccessToken',
  'DeviceCode',
  'BackchannelAuthenticationRequest',
  'PushedAuthorizationRequest',
]);

/** How a stored client secret digest is handed to oidc-provider as the client's `client_secret`. */
export const SECRET_DIGEST_PREFIX = 'sha256:';
export const hashClientSecret = (secret: string) => createHash('sha256').update(secret).digest('hex');
const isSecretDigest = (value: string) => value.startsWith(SECRET_DIGEST_PREFIX) && /^[0-9a-f]{64}$/.test(value.slice(SECRET_DIGEST_PREFIX.length));

/**
 * oidc-provider compares a presented secret with the stored one in clear (`compareClientSecret`).
 * With digests stored, compare digests instead, in constant time. Only this provider's Client
 * class is changed. (Symmetric client keys derived from the secret — client_secret_jwt, HS* —
 * are not enabled in this profile, so nothing else reads the secret.)
 */
export function installHashedClientSecrets(ClientClass: { prototype: object }): void {
  Object.defineProperty(ClientClass.prototype, 'compareClientSecret', {
    configurable: true,
    value(this: { clientSecret?: string }, actual: unknown) {
      const stored = this.clientSecret;
      if (typeof stored !== 'string' || typeof actual !== 'string') return false;
      const expected = Buffer.from(isSecretDigest(stored) ? stored.slice(SECRET_DIGEST_PREFIX.length) : hashClientSecret(stored));
      const given = Buffer.from(hashClientSecret(actual));
      return expected.length === given.length && timingSafeEqual(expected, given);
    },
  });
}

export function digestId(id: string): string {
  return createHash('sha256').update(id).digest('base64url');
}

export interface AdapterDeps {
  db: DB;
  secretBox: SecretBox;
  /** Client ID Metadata Documents; undefined when the feature is disabled. */
  metadataDocuments?: MetadataDocuments | undefined;
  /** Records clients' arrival and approval status (required for the Client model). */
  clients?: ClientsRepository;
  trustPolicy?: TrustPolicy;
  audit?: AuditLog;
  /** GATEHOUSE_REFRESH_TOKEN_REUSE_GRACE, seconds; 0 (the default here) turns rotation grace off. */
  refreshTokenReuseGrace?: number;
}

function arrival() {
  const context = requestContext();
  return { ip: context?.ip, userAgent: context?.userAgent?.slice(0, 512) };
}

function markRevoked() {
  const uow = currentUnitOfWork();
  if (uow) uow.revoked = true;
}

/** Models whose rows belong to a grant and die with it. */
const GRANT_BOUND = ['AccessToken', 'RefreshToken', 'AuthorizationCode'];

/** The grant of each token this request has read (stored id → grant id), so its writes can lock the grant first. */
const TOKEN_GRANTS = 'adapter:token-grants';
function rememberGrant(storedId: string, grantId: unknown): void {
  const memo = requestContext()?.memo;
  if (!memo || typeof grantId !== 'string') return;
  let grants = memo.get(TOKEN_GRANTS) as Map<string, string> | undefined;
  if (!grants) memo.set(TOKEN_GRANTS, (grants = new Map()));
  grants.set(storedId, grantId);
}
function grantOf(storedId: string): string | undefined {
  return (requestContext()?.memo.get(TOKEN_GRANTS) as Map<string, string> | undefined)?.get(storedId);
}

/**
 * The one lock order (docs/security.md "Lock order"): a write that consumes, deletes or revokes a
 * grant's tokens first locks the grant's row — FOR KEY SHARE to redeem (a concurrent revocation
 * then waits, or wins and the redemption finds no grant), FOR UPDATE to revoke — and only then
 * touches token rows. Inside a deferred unit of work the share lock is queued (it is the request's
 * first write, so the batch takes it first) and the update lock is taken by the flush before any
 * queued write. Outside a unit of work a single statement has nothing to order against.
 */
async function lockGrant(db: DB, grantId: string, mode: 'share' | 'update', gate?: string): Promise<void> {
  const uow = currentUnitOfWork();
  if (!uow) return;
  const held = uow.grantLocks.get(grantId);
  if (held === 'update' || held === mode) return;
  uow.grantLocks.set(grantId, mode);
  if (uow.deferred) {
    if (mode === 'share') await writeCompiled(db, grantLockQuery([grantId], 'share'), gate ? { gate } : {});
    return;
  }
  const { rows } = await current(db).executeQuery(grantLockQuery([grantId], mode));
  if (mode === 'share' && gate && rows.length === 0) throw new errors.InvalidGrant(gate);
}

/** Revokes a grant: the grant and every token under it, the grant's row locked first. Kept even if the request fails. */
async function revokeGrant(db: DB, grantId: string): Promise<void> {
  markRevoked();
  await lockGrant(db, grantId, 'update');
  forgetReadAhead('payload:*');
  await write(db, (executor) =>
    executor
      .deleteFrom('oidc_payloads')
      .where((eb) => eb.or([eb.and([eb('model', '=', 'Grant'), eb('id', '=', grantId)]), eb.and([eb('grant_id', '=', grantId), eb('model', 'in', GRANT_BOUND)])])),
  );
}

class PayloadAdapter implements Adapter {
  readonly #hashed: boolean;
  constructor(
    private readonly model: string,
    private readonly deps: AdapterDeps,
  ) {
    this.#hashed = HASHED_MODELS.has(model);
  }

  #key(id: string) {
    return this.#hashed ? digestId(id) : id;
  }

  async upsert(id: string, payload: AdapterPayload, expiresIn?: number): Promise<void> {
    forgetReadAhead(readAheadKeys.payload(this.model, this.#key(id)));
    const stored: Record<string, unknown> = { ...payload };
    if (this.#hashed) delete stored.jti;
    const expiresAt = expiresIn ? new Date(Date.now() + expiresIn * 1000) : null;
    const row = {
      model: this.model,
      id: this.#key(id),
      payload: JSON.stringify(stored),
      grant_id: payload.grantId ?? null,
      uid: payload.uid ?? null,
      account_id: payload.accountId ?? null,
      client_id: payload.clientId ?? null,
      expires_at: expiresAt,
      // A rotation's successor names the token it replaced (rotation grace finds it by that).
      ...(this.model === 'RefreshToken' ? { rotated_from: refreshRequest()?.rotatedFrom ?? null } : {}),
    };
    try {
      await write(this.deps.db, (db) =>
        db
          .insertInto('oidc_payloads')
          .values(row)
          .onConflict((oc) =>
            oc.columns(['model', 'id']).doUpdateSet({
              payload: row.payload,
              grant_id: row.grant_id,
              uid: row.uid,
              account_id: row.account_id,
              client_id: row.client_id,
              expires_at: row.expires_at,
            }),
          ),
      );
    } catch (err) {
      // Two requests of one browser session in flight: oidc-provider gave the session a new id
      // when one of them finished a sign-in or consent, and the other now saves it under the old
      // id. The newer row (same uid) is the session; the stale save is dropped rather than a 500.
      // Only outside a unit of work: inside one, the failed statement has already doomed it.
      const unique = err as { code?: string; constraint?: string };
      if (this.model === 'Session' && unique.code === '23505' && unique.constraint === 'oidc_payloads_session_uid' && !currentUnitOfWork()) return;
      throw err;
    }
  }

  async find(id: string): Promise<AdapterPayload | undefined> {
    const key = this.#key(id);
    // Read ahead with the rest of a token request (oidc/token-prefetch.ts), or from the database.
    const ahead = readAhead<{ payload: AdapterPayload; consumed_at: unknown; in_grace?: boolean }>(readAheadKeys.payload(this.model, key));
    const row = ahead
      ? ahead.value
      : await current(this.deps.db)
          .selectFrom('oidc_payloads as t')
          .select(['t.payload', 't.consumed_at', inGraceSql(this.deps.refreshTokenReuseGrace ?? 0).as('in_grace')])
          .where('t.model', '=', this.model)
          .where('t.id', '=', key)
          .where((eb) => eb.or([eb('t.expires_at', 'is', null), eb('t.expires_at', '>', sql<Date>`now()`)]))
          .executeTakeFirst();
    if (!row) return undefined;
    const payload = { ...row.payload } as AdapterPayload;
    if (this.#hashed) payload.jti = id;
    rememberGrant(key, payload.grantId);
    const consumedAt = asDate(row.consumed_at);
    if (consumedAt) {
      const refresh = this.model === 'RefreshToken' ? refreshRequest() : undefined;
      if (refresh?.presented === key) {
        // Rotation grace (oidc/rotation-grace.ts): the same client, presenting the token it has
        // just rotated, whose successor it never used: it gets a successor, not a revocation.
        if (row.in_grace === true && payload.clientId === refresh.clientId) {
          refresh.graceRetry = true;
          return payload;
        }
        // A used token from another client is reuse too (oidc-provider would only say "client
        // mismatch"): whoever holds it, the grant is revoked.
        if (payload.clientId !== refresh.clientId && typeof payload.grantId === 'string') {
          refresh.foreignReplay = { grantId: payload.grantId, accountId: typeof payload.accountId === 'string' ? payload.accountId : undefined };
          await revokeGrant(this.deps.db, payload.grantId);
        }
      }
      payload.consumed = Math.floor(consumedAt.getTime() / 1000);
    }
    return payload;
  }

  async findByUid(uid: string): Promise<AdapterPayload | undefined> {
    const row = await current(this.deps.db)
      .selectFrom('oidc_payloads')
      .select(['payload'])
      .where('model', '=', this.model)
      .where('uid', '=', uid)
      .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', sql<Date>`now()`)]))
      .executeTakeFirst();
    return row?.payload as AdapterPayload | undefined;
  }

  async findByUserCode(): Promise<AdapterPayload | undefined> {
    return undefined; // the device flow is disabled
  }

  async consume(id: string): Promise<void> {
    const key = this.#key(id);
    forgetReadAhead(readAheadKeys.payload(this.model, key));
    const used = `${this.model === 'RefreshToken' ? 'refresh token' : 'grant'} already used`;
    // The grant first (lock order), and it must still be there: a revocation that won the race
    // leaves nothing to redeem under.
    const grantId = grantOf(key);
    if (grantId) await lockGrant(this.deps.db, grantId, 'share', 'grant request is invalid');
    const refresh = this.model === 'RefreshToken' ? refreshRequest() : undefined;
    const consumptions =
      refresh?.graceRetry && refresh.presented === key
        ? [
            // Its one grace use, still within the window (the database's clock decides)…
            (db: DB) =>
              db
                .updateTable('oidc_payloads')
                .set({ reused_at: sql<Date>`now()` })
                .where('model', '=', 'RefreshToken')
                .where('id', '=', key)
                .where('consumed_at', 'is not', null)
                .where('reused_at', 'is', null)
                .where('consumed_at', '>', sql<Date>`now() - make_interval(secs => ${this.deps.refreshTokenReuseGrace ?? 0})`)
                .returning('id'),
            // …and the undelivered successor, still unused, is used up: one chain stays alive.
            (db: DB) =>
              db
                .updateTable('oidc_payloads')
                .set({ consumed_at: sql<Date>`now()`, reused_at: sql<Date>`now()` })
                .where('model', '=', 'RefreshToken')
                .where('rotated_from', '=', key)
                .where('consumed_at', 'is', null)
                .returning('id'),
          ]
        : [
            (db: DB) =>
              db
                .updateTable('oidc_payloads')
                .set({ consumed_at: sql<Date>`now()` })
                .where('model', '=', this.model)
                .where('id', '=', key)
                .where('consumed_at', 'is', null)
                .returning('id'),
          ];
    for (const consumption of consumptions) {
      // Queued with the request's other writes, a consumption that finds nothing refuses them all.
      const rows = await write(this.deps.db, consumption, { gate: used });
      if (rows && rows.length === 0) {
        // Lost a race with a concurrent redemption (or the row is gone): never a second success.
        throw new errors.InvalidGrant(used);
      }
    }
    if (refresh) refresh.rotatedFrom = key;
  }

  async destroy(id: string): Promise<void> {
    markRevoked();
    const key = this.#key(id);
    forgetReadAhead(readAheadKeys.payload(this.model, key));
    // A token of a grant (reuse detection, RFC 7009 revocation) or the grant itself: the grant's lock first.
    const grantId = this.model === 'Grant' ? id : GRANT_BOUND.includes(this.model) ? grantOf(key) : undefined;
    if (grantId) await lockGrant(this.deps.db, grantId, 'update');
    await write(this.deps.db, (db) => db.deleteFrom('oidc_payloads').where('model', '=', this.model).where('id', '=', key));
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    markRevoked();
    await lockGrant(this.deps.db, grantId, 'update');
    forgetReadAhead('payload:*');
    await write(this.deps.db, (db) => db.deleteFrom('oidc_payloads').where('model', '=', this.model).where('grant_id', '=', grantId));
  }
}

class ClientAdapter implements Adapter {
  readonly #clients: ClientsRepository;
  readonly #trust: TrustPolicy;
  constructor(private readonly deps: AdapterDeps) {
    if (!deps.clients || !deps.trustPolicy) throw new Error('the Client adapter needs the clients repository and the trust policy');
    this.#clients = deps.clients;
    this.#trust = deps.trustPolicy;
  }

  /** Dynamic registration (RFC 7591) and its updates. A new client is recorded with who registered it, pending unless trusted. */
  async upsert(id: string, payload: AdapterPayload): Promise<void> {
    forgetReadAhead(readAheadKeys.client(id));
    const { client_secret: secret, ...metadata } = payload as AdapterPayload & { client_secret?: string };
    // A secret the adapter handed out is already a digest (an update of a stored client): keep it.
    const secretHash = typeof secret === 'string' ? (isSecretDigest(secret) ? secret.slice(SECRET_DIGEST_PREFIX.length) : hashClientSecret(secret)) : null;
    const fingerprint = secret === undefined ? metadataFingerprint(metadata) : undefined;
    if (fingerprint) {
      const existing = await this.#clients.findRecognisable(fingerprint, id);
      if (existing) {
        // The same public client again: answer with it (the registration route swaps the id).
        noteRecognised({ generatedId: id, clientId: existing.client_id, issuedAt: Math.floor(existing.created_at.getTime() / 1000), status: existing.status });
        return;
      }
    }
    const decision = await this.#trust.decide({ method: 'dcr', clientId: id });
    const who = arrival();
    await current(this.deps.db)
      .insertInto('clients')
      .values({
        client_id: id,
        metadata: JSON.stringify(metadata),
        client_secret_hash: secretHash,
        registration_method: 'dcr',
        status: decision.status,
        ceiling: decision.ceiling === null ? null : JSON.stringify(decision.ceiling),
        status_reason: decision.reason,
        source_ip: who.ip ?? null,
        user_agent: who.userAgent ?? null,
        metadata_fingerprint: fingerprint ?? null,
      })
      .onConflict((oc) =>
        oc.column('client_id').doUpdateSet({
          metadata: JSON.stringify(metadata),
          metadata_fingerprint: fingerprint ?? null,
          client_secret_hash: secretHash,
          client_secret_enc: null,
          updated_at: sql<Date>`now()`,
        }),
      )
      .execute();
  }

  async find(id: string): Promise<AdapterPayload | undefined> {
    // A URL client_id names a metadata document; registered clients never have URL ids.
    if (looksLikeClientIdUrl(id)) return this.#findByDocument(id);
    type ClientRow = Pick<ClientsTableRow, 'metadata' | 'client_secret_enc' | 'client_secret_hash' | 'status' | 'ceiling' | 'registration_method'>;
    const ahead = readAhead<ClientRow>(readAheadKeys.client(id));
    const row: ClientRow | undefined | null = ahead
      ? ahead.value
      : await current(this.deps.db)
          .selectFrom('clients')
          .select(['metadata', 'client_secret_enc', 'client_secret_hash', 'status', 'ceiling', 'registration_method'])
          .where('client_id', '=', id)
          .executeTakeFirst();
    if (!row || row.registration_method !== 'dcr') return undefined;
    rememberClientPolicy(id, { status: row.status, ceiling: row.ceiling });
    const payload = { ...row.metadata } as AdapterPayload & { client_secret?: string };
    if (row.client_secret_hash) payload.client_secret = `${SECRET_DIGEST_PREFIX}${row.client_secret_hash}`;
    else if (row.client_secret_enc) payload.client_secret = this.deps.secretBox.decrypt(row.client_secret_enc, `client-secret:${id}`); // stored before 0005
    return payload;
  }

  async #findByDocument(id: string): Promise<AdapterPayload | undefined> {
    if (!this.deps.metadataDocuments) return undefined;
    let resolved;
    try {
      resolved = await this.deps.metadataDocuments.resolve(id);
    } catch (error) {
      if (error instanceof MetadataDocumentError) {
        await this.deps.audit?.record({ event: 'client.metadata_refused', clientId: id, details: { reason: error.message, ...(error.detail ? { detail: error.detail } : {}) } });
        throw new errors.InvalidClient(error.message);
      }
      throw error;
    }
    let policy = !resolved.fresh ? await this.#clients.policy(id) : undefined;
    if (!policy) {
      const recorded = await this.#clients.recordDocumentClient(id, resolved.metadata, await this.#trust.decide({ method: 'cimd', clientId: id }), arrival());
      policy = recorded;
      await this.deps.audit?.record({
        event: recorded.returnedToPending ? 'client.returned_to_pending' : 'client.metadata_fetched',
        actor: recorded.returnedToPending ? 'gatehouse' : `client:${id}`,
        clientId: id,
        details: { client_name: resolved.metadata.client_name, redirect_uris: resolved.metadata.redirect_uris, status: recorded.status, new: recorded.created },
      });
    }
    rememberClientPolicy(id, { status: policy.status, ceiling: policy.ceiling });
    return resolved.metadata as AdapterPayload;
  }

  async findByUid(): Promise<undefined> {
    return undefined;
  }
  async findByUserCode(): Promise<undefined> {
    return undefined;
  }
  async consume(): Promise<void> {
    throw new Error('clients are never consumed');
  }
  async destroy(id: string): Promise<void> {
    await current(this.deps.db).deleteFrom('clients').where('client_id', '=', id).execute();
  }
  async revokeByGrantId(): Promise<void> {}
}

/** The adapter factory handed to oidc-provider (`adapter` option). */
export function createAdapterFactory(deps: AdapterDeps): (model: string) => Adapter {
  return (model: string) => (model === 'Client' ? new ClientAdapter(deps) : new PayloadAdapter(model, deps));
}

/** What one sweep deleted: OAuth artefacts by model (AccessToken, AuthorizationCode, Session, …), and other tables by name. */
export interface SweepReport {
  total: number;
  /** oidc_payloads rows by model. */
  payloads: Record<string, number>;
  metadataDocuments: number;
  rateLimitCounters: number;
  signInAttempts: number;
  adminSessions: number;
}

/** Rows deleted per statement, so a large backlog never holds locks on the hot table for long. */
const SWEEP_BATCH = 5000;

/**
 * Deletes rows expired more than `graceSeconds` ago: tokens, codes, sessions, interactions and
 * grants (oidc_payloads, in batches), cached metadata documents, and rate-limit state and admin
 * sessions that no longer matter. Consumed codes and rotated refresh tokens are kept until they
 * expire, since reuse detection needs them (RFC 9700 §4.14.2).
 */
export async function sweepExpired(db: DB, graceSeconds = 300): Promise<SweepReport> {
  const payloads: Record<string, number> = {};
  for (;;) {
    const deleted = await db
      .deleteFrom('oidc_payloads')
      .where((eb) =>
        eb(
          eb.refTuple('model', 'id'),
          'in',
          eb
            .selectFrom('oidc_payloads')
            .select(['model', 'id'])
            .where('expires_at', '<', sql<Date>`now() - make_interval(secs => ${graceSeconds})`)
            .limit(SWEEP_BATCH)
            .$asTuple('model', 'id'),
        ),
      )
      .returning('model')
      .execute();
    for (const { model } of deleted) payloads[model] = (payloads[model] ?? 0) + 1;
    if (deleted.length < SWEEP_BATCH) break;
  }
  const documents = await db
    .deleteFrom('client_metadata_documents')
    .where('expires_at', '<', sql<Date>`now() - make_interval(secs => ${graceSeconds})`)
    .executeTakeFirst();
  // Counters and lockouts only matter within their window (an hour at most) or their lockout; a
  // day of quiet forgets them, so per-address and per-client keys cannot pile up.
  const counters = await db
    .deleteFrom('rate_limit_counters')
    .where('window_start', '<', sql<Date>`now() - interval '1 day'`)
    .executeTakeFirst();
  const attempts = await db
    .deleteFrom('sign_in_attempts')
    .where('updated_at', '<', sql<Date>`now() - interval '1 day'`)
    .where((eb) => eb.or([eb('locked_until', 'is', null), eb('locked_until', '<', sql<Date>`now()`)]))
    .executeTakeFirst();
  const adminSessions = await db.deleteFrom('admin_sessions').where('expires_at', '<', sql<Date>`now()`).executeTakeFirst();
  const report = {
    payloads,
    metadataDocuments: Number(documents.numDeletedRows),
    rateLimitCounters: Number(counters.numDeletedRows),
    signInAttempts: Number(attempts.numDeletedRows),
    adminSessions: Number(adminSessions.numDeletedRows),
  };
  const total =
    Object.values(payloads).reduce((n, c) => n + c, 0) + report.metadataDocuments + report.rateLimitCounters + report.signInAttempts + report.adminSessions;
  return { total, ...report };
}
