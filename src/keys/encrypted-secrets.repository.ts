/**
 * Every value stored encrypted under the key-encryption key (the `*_enc` columns of the schema):
 * `keys.private_enc` (private signing JWKs and cookie keys) and `clients.client_secret_enc` (client
 * secrets stored before migration 0005; newer ones are digests). `gatehouse keys rewrap` reads and
 * rewrites them here; a new encrypted column must be added to this inventory.
 */
import { sql } from 'kysely';
import type { DB } from '../db/database.ts';
import { current } from '../db/unit-of-work.ts';

/** One encrypted value, named by the record it belongs to (never its plaintext). */
export type EncryptedSecret =
  | { kind: 'signing_key' | 'cookie_key'; kid: string; ciphertext: string }
  | { kind: 'client_secret'; clientId: string; ciphertext: string };

export function createEncryptedSecretsRepository(db: DB) {
  return {
    /**
     * Every encrypted value, locked until the transaction ends: the keys table against key
     * creation and rotation (as `keys.repository.ts` `lock()` does), client rows against a
     * re-registration rewriting them. Call inside a transaction.
     */
    async listForUpdate(): Promise<EncryptedSecret[]> {
      const executor = current(db);
      await sql`lock table keys in share row exclusive mode`.execute(executor);
      const keys = await executor.selectFrom('keys').select(['kid', 'use', 'private_enc']).orderBy('created_at').orderBy('kid').execute();
      const clients = await executor
        .selectFrom('clients')
        .select(['client_id', 'client_secret_enc'])
        .where('client_secret_enc', 'is not', null)
        .orderBy('client_id')
        .forUpdate()
        .execute();
      return [
        ...keys.map((k): EncryptedSecret => ({ kind: k.use === 'sig' ? 'signing_key' : 'cookie_key', kid: k.kid, ciphertext: k.private_enc })),
        ...clients.map((c): EncryptedSecret => ({ kind: 'client_secret', clientId: c.client_id, ciphertext: c.client_secret_enc! })),
      ];
    },

    /** Replaces one encrypted value (same record, same purpose). */
    async replace(secret: EncryptedSecret, ciphertext: string): Promise<void> {
      const executor = current(db);
      if (secret.kind === 'client_secret') {
        await executor.updateTable('clients').set({ client_secret_enc: ciphertext }).where('client_id', '=', secret.clientId).execute();
      } else {
        await executor.updateTable('keys').set({ private_enc: ciphertext }).where('kid', '=', secret.kid).execute();
      }
    },
  };
}

export type EncryptedSecretsRepository = ReturnType<typeof createEncryptedSecretsRepository>;
