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
  activatesAt: Date | null;
  retiredAt: Date | null;
  unpublishAt: Date | null;
}

export type SigningKeyState = 'next' | 'active' | 'retired' | 'unpublished';

type Row = {
  kid: string;
  use: 'sig' | 'cookie';
  alg: string | null;
  public_jwk: Record<string, unknown> | null;
  private_enc: string;
  created_at: Date;
  activates_at: Date | null;
  retired_at: Date | null;
  unpublish_at: Date | null;
};

const toStored = (r: Row): StoredKey => ({
  kid: r.kid,
  use: r.use,
  alg: r.alg,
  publicJwk: r.public_jwk,
  privateEnc: r.private_enc,
  createdAt: r.created_at,
  activatesAt: r.activates_at,
  retiredAt: r.retired_at,
  unpublishAt: r.unpublish_at,
});

export function createKeysRepository(db: DB) {
  return {
    /** Cookie keys not retired, and signing keys still published (see migration 0006), newest first. */
    async listActive(): Promise<StoredKey[]> {
      const rows = await current(db)
        .selectFrom('keys')
        .selectAll()
        .where((eb) =>
          eb.or([
            eb.and([eb('use', '=', 'cookie'), eb('retired_at', 'is', null)]),
            eb.and([eb('use', '=', 'sig'), eb.or([eb('unpublish_at', 'is', null), eb('unpublish_at', '>', sql<Date>`now()`)])]),
          ]),
        )
        .orderBy('created_at', 'desc')
        .execute();
      return rows.map(toStored);
    },

    async listSigning(): Promise<StoredKey[]> {
      const rows = await current(db).selectFrom('keys').selectAll().where('use', '=', 'sig').orderBy('created_at', 'desc').execute();
      return rows.map(toStored);
    },

    /** Schedules a rotation: `kid` signs from `activatesAt`; the keys signing until then retire then and leave the JWKS at `unpublishAt`. */
    async scheduleRetirement(exceptKid: string, retireAt: Date, unpublishAt: Date): Promise<void> {
      await current(db)
        .updateTable('keys')
        .set({ retired_at: retireAt, unpublish_at: unpublishAt })
        .where('use', '=', 'sig')
        .where('kid', '<>', exceptKid)
        .where('retired_at', 'is', null)
        .execute();
    },

    async insert(key: Omit<StoredKey, 'createdAt' | 'activatesAt' | 'retiredAt' | 'unpublishAt'> & { activatesAt?: Date }): Promise<void> {
      await current(db)
        .insertInto('keys')
        .values({
          kid: key.kid,
          use: key.use,
          alg: key.alg,
          public_jwk: key.publicJwk ? JSON.stringify(key.publicJwk) : null,
          private_enc: key.privateEnc,
          activates_at: key.activatesAt ?? null,
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
