/**
 * Signing keys (ES256, for JWT access tokens) and cookie-signing keys. Generated on first start,
 * stored in PostgreSQL with the private parts encrypted under the key-encryption key, and loaded
 * by every instance from there.
 */
import { randomBytes } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';
import type { DB } from '../db/database.ts';
import { inUnitOfWork } from '../db/unit-of-work.ts';
import { createKeysRepository } from './keys.repository.ts';
import type { SecretBox } from './secret-box.ts';

export interface KeyMaterial {
  /** Private JWKs, newest first: the first one signs. */
  signing: (JWK & { kid: string; alg: string; use: 'sig' })[];
  /** Cookie keys, newest first: the first one signs, all verify. */
  cookies: string[];
}

export function createKeysService(deps: { db: DB; secretBox: SecretBox }) {
  const repo = createKeysRepository(deps.db);
  const purpose = (use: string, kid: string) => `key:${use}:${kid}`;

  async function load(): Promise<KeyMaterial> {
    const rows = await repo.listActive();
    return {
      signing: rows
        .filter((r) => r.use === 'sig')
        .map((r) => JSON.parse(deps.secretBox.decrypt(r.privateEnc, purpose('sig', r.kid)))),
      cookies: rows.filter((r) => r.use === 'cookie').map((r) => deps.secretBox.decrypt(r.privateEnc, purpose('cookie', r.kid))),
    };
  }

  async function createSigningKey(): Promise<void> {
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
    });
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
