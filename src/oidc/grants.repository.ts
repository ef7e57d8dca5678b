import { sql } from 'kysely';
import type { DB } from '../db/database.ts';
import { current } from '../db/unit-of-work.ts';

export function createGrantsRepository(db: DB) {
  return {
    /** The newest live grant a user gave a client, so consent is remembered across browser sessions. */
    async findLatestGrantId(accountId: string, clientId: string): Promise<string | undefined> {
      const row = await current(db)
        .selectFrom('oidc_payloads')
        .select('id')
        .where('model', '=', 'Grant')
        .where('account_id', '=', accountId)
        .where('client_id', '=', clientId)
        .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', sql<Date>`now()`)]))
        .orderBy('created_at', 'desc')
        .limit(1)
        .executeTakeFirst();
      return row?.id;
    },
  };
}
