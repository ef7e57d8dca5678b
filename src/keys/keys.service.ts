/**
 * Signing keys (ES256, for JWT access tokens) and cookie-signing keys. Generated on first start,
 * stored in PostgreSQL with the private parts encrypted under the key-encryption key, and loaded
 * by every instance from there.
 */
import { randomBytes } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';
import type { DB } from '../db/database.ts';
import { inUnitOfWork } from '../db/unit-of-work.ts';
import { createKeysRepository, type SigningKeyState, type StoredKey } from './keys.repository.ts';
import type { SecretBox } from './secret-box.ts';

export interface KeyMaterial {
  /** Private JWKs, all published in the JWKS: the first one (the active key) signs. */
  signing: (JWK & { kid: string; alg: string; use: 'sig' })[];
  /** Cookie keys, newest first: the first one signs, all verify. */
  cookies: string[];
}

/** The associated data a key's private part is encrypted with (secret-box.ts): binds it to its row. */
export const keyPurpose = (use: 'sig' | 'cookie', kid: string) => `key:${use}:${kid}`;

export function createKeysService(deps: { db: DB; secretBox: SecretBox }) {
  const repo = createKeysRepository(deps.db);
  const purpose = keyPurpose;

  async function load(): Promise<KeyMaterial> {
    const rows = await repo.listActive();
    const now = new Date();
    const signing = rows.filter((r) => r.use === 'sig');
    // The active key first (oidc-provider signs with the first key of the alg): keys scheduled to
    // sign later and retired keys are published but never sign.
    const active = signing.find((r) => stateOf(r, now) === 'active') ?? signing[0];
    const ordered = active ? [active, ...signing.filter((r) => r !== active)] : [];
    return {
      signing: ordered.map((r) => JSON.parse(deps.secretBox.decrypt(r.privateEnc, purpose('sig', r.kid)))),
      cookies: rows.filter((r) => r.use === 'cookie').map((r) => deps.secretBox.decrypt(r.privateEnc, purpose('cookie', r.kid))),
    };
  }

  function stateOf(key: StoredKey, now: Date): SigningKeyState {
    if (key.unpublishAt && key.unpublishAt <= now) return 'unpublished';
    if (key.retiredAt && key.retiredAt <= now) return 'retired';
    if (key.activatesAt && key.activatesAt > now) return 'next';
    return 'active';
  }

  async function createSigningKey(activatesAt?: Date): Promise<string> {
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    const jwk = await exportJWK(privateKey);
    const kid = await calculateJwkThumbprint(jwk);
    const full = { ...jwk, kid, alg: 'ES256', use: 'sig' };
    const { d: _d, ...publicJwk } = full;
    await repo.insert({
      kid,
      use: 'sig',
      alg: 'ES256',
      publicJwk,
      privateEnc: deps.secretBox.encrypt(JSON.stringify(full), purpose('sig', kid)),
      activatesAt,
    });
    return kid;
  }

  async function createCookieKey(): Promise<void> {
    const kid = `cookie-${randomBytes(8).toString('hex')}`;
    await repo.insert({
      kid,
      use: 'cookie',
      alg: null,
      publicJwk: null,
      privateEnc: deps.secretBox.encrypt(randomBytes(32).toString('base64url'), purpose('cookie', kid)),
    });
  }

  return {
    load,

    /**
     * Rotates the signing key: a new key is published now and signs from `leadSeconds` on (so
     * resource servers that cache the JWKS see it before any token it signed); the keys signing
     * until then retire at that moment and stay published `tokenTtlSeconds` (+1 minute) longer,
     * until every token they signed has expired.
     */
    /**
     * Publishes a new signing key. With `ifDueAfterSeconds` (the schedule), it rotates only if, under
     * the table lock, the active key is at least that old and no rotation is scheduled yet — so
     * instances whose timers fire together rotate once between them; the others get `undefined`.
     */
    async rotate(options: { leadSeconds: number; tokenTtlSeconds: number; ifDueAfterSeconds?: number }): Promise<{ kid: string; activatesAt: Date; retiredUnpublishAt: Date } | undefined> {
      return inUnitOfWork(
        deps.db,
        async () => {
          await repo.lock();
          if (options.ifDueAfterSeconds !== undefined) {
            const status = await this.rotationStatus();
            if (status.scheduled || status.activeAgeSeconds < options.ifDueAfterSeconds) return undefined;
          }
          const activatesAt = new Date(Date.now() + options.leadSeconds * 1000);
          const unpublishAt = new Date(activatesAt.getTime() + (options.tokenTtlSeconds + 60) * 1000);
          const kid = await createSigningKey(activatesAt);
          await repo.scheduleRetirement(kid, activatesAt, unpublishAt);
          return { kid, activatesAt, retiredUnpublishAt: unpublishAt };
        },
        () => true,
      );
    },

    /** Every signing key with its state, without private material (`gatehouse keys list`). */
    async list() {
      const now = new Date();
      return (await repo.listSigning()).map((k) => ({
        kid: k.kid,
        alg: k.alg,
        state: stateOf(k, now),
        createdAt: k.createdAt,
        activatesAt: k.activatesAt,
        retiresAt: k.retiredAt,
        unpublishAt: k.unpublishAt,
        publicJwk: k.publicJwk,
      }));
    },

    /** The age in seconds of the key signing now, and whether a rotation is already scheduled. */
    async rotationStatus(): Promise<{ activeAgeSeconds: number; scheduled: boolean }> {
      const keys = await this.list();
      const active = keys.find((k) => k.state === 'active');
      const since = active ? (active.activatesAt ?? active.createdAt) : new Date(0);
      return { activeAgeSeconds: Math.floor((Date.now() - since.getTime()) / 1000), scheduled: keys.some((k) => k.state === 'next') };
    },
    /** Loads the keys, generating any that are missing (first start). Safe with concurrent instances. */
    async ensure(): Promise<{ keys: KeyMaterial; created: string[] }> {
      const existing = await load();
      if (existing.signing.length && existing.cookies.length) return { keys: existing, created: [] };
      const created: string[] = [];
      await inUnitOfWork(
        deps.db,
        async () => {
          await repo.lock();
          const now = await load();
          if (!now.signing.length) {
            await createSigningKey();
            created.push('signing key (ES256)');
          }
          if (!now.cookies.length) {
            await createCookieKey();
            created.push('cookie key');
          }
        },
        () => true,
      );
      return { keys: await load(), created };
    },
  };
}

export type KeysService = ReturnType<typeof createKeysService>;
