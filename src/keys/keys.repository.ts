import { sql } from 'kysely';
import type { DB } from '../db/database.ts';
import { current } from '../db/unit-of-work.ts';

export interface StoredKey {
  kid: string;
  use: 'sig' | 'cookie';
  alg: string | null;
  publicJwk: Record<string, unknown> | null;
  privateEnc: string;
  createdAt: Date;
}

export function createKeysRepository(db: DB) {
  return {
    async listActive(): Promise<StoredKey[]> {
      const rows = await current(db)
        .selectFrom('keys')
        .selectAll()
        .where('retired_at', 'is', null)
        .orderBy('created_at', 'desc')
        .execute();
      return rows.map((r) => ({
        kid: r.kid,
        use: r.use,
        alg: r.alg,
        publicJwk: r.public_jwk,
        privateEnc: r.private_enc,
        createdAt: r.created_at,
      }));
    },

    async insert(key: Omit<StoredKey, 'createdAt'>): Promise<void> {
      await current(db)
        .insertInto('keys')
        .values({
          kid: key.kid,
          use: key.use,
          alg: key.alg,
          public_jwk: key.publicJwk ? JSON.stringify(key.publicJwk) : null,
          private_enc: key.privateEnc,
        })
        .execute();
    },

    /** Serialises key creation between instances starting at the same time. */
    async lock(): Promise<void> {
      await sql`lock table keys in share row exclusive mode`.execute(current(db));
    },
  };
}

export type KeysRepository = ReturnType<typeof createKeysRepository>;
