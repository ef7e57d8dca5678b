import { sql } from 'kysely';
import type { DB } from '../db/database.ts';
import { readAhead, readAheadKeys } from '../db/request-cache.ts';
import { current } from '../db/unit-of-work.ts';

export type Role = 'user' | 'admin';

export interface Account {
  id: string;
  email: string;
  passwordHash: string;
  disabledAt: Date | null;
  role: Role;
}

/** An account as the console lists it (no password hash). */
export interface AccountSummary {
  id: string;
  email: string;
  role: Role;
  disabledAt: Date | null;
  createdAt: Date;
}

const SUMMARY = ['id', 'email', 'role', 'disabled_at', 'created_at'] as const;
const isUuid = (id: string) => /^[0-9a-f-]{36}$/i.test(id);

function toSummary(row: { id: string; email: string; role: Role; disabled_at: Date | null; created_at: Date }): AccountSummary {
  return { id: row.id, email: row.email, role: row.role, disabledAt: row.disabled_at, createdAt: row.created_at };
}

export function createAccountsRepository(db: DB) {
  return {
    async list(): Promise<AccountSummary[]> {
      const rows = await current(db).selectFrom('accounts').select(SUMMARY).orderBy(sql`lower(email)`).execute();
      return rows.map(toSummary);
    },
    async findSummaryById(id: string): Promise<AccountSummary | undefined> {
      if (!isUuid(id)) return undefined;
      const row = await current(db).selectFrom('accounts').select(SUMMARY).where('id', '=', id).executeTakeFirst();
      return row && toSummary(row);
    },
    /** Disables (now) or enables an account; undefined when there is no such account. */
    async setDisabled(id: string, disabled: boolean): Promise<AccountSummary | undefined> {
      if (!isUuid(id)) return undefined;
      const row = await current(db)
        .updateTable('accounts')
        .set({ disabled_at: disabled ? sql<Date>`coalesce(disabled_at, now())` : null, updated_at: sql<Date>`now()` })
        .where('id', '=', id)
        .returning(SUMMARY)
        .executeTakeFirst();
      return row && toSummary(row);
    },
    async findByEmail(email: string): Promise<Account | undefined> {
      const row = await current(db)
        .selectFrom('accounts')
        .select(['id', 'email', 'password_hash', 'disabled_at', 'role'])
        .where(sql<string>`lower(email)`, '=', email.toLowerCase())
        .executeTakeFirst();
      return row && { id: row.id, email: row.email, passwordHash: row.password_hash, disabledAt: row.disabled_at, role: row.role };
    },
    /** Runs on every code exchange and refresh (findAccount): reads no more than it needs. */
    async findActiveById(id: string): Promise<Pick<Account, 'id' | 'email'> | undefined> {
      if (!/^[0-9a-f-]{36}$/i.test(id)) return undefined;
      // Read ahead with a token request (oidc/token-prefetch.ts): null means absent or disabled.
      const ahead = readAhead<Pick<Account, 'id' | 'email'>>(readAheadKeys.account(id));
      if (ahead) return ahead.value ?? undefined;
      return current(db)
        .selectFrom('accounts')
        .select(['id', 'email'])
        .where('id', '=', id)
        .where('disabled_at', 'is', null)
        .executeTakeFirst();
    },
    async insert(email: string, passwordHash: string, role: Role = 'user'): Promise<Account | undefined> {
      const row = await current(db)
        .insertInto('accounts')
        .values({ email, password_hash: passwordHash, role })
        .onConflict((oc) => oc.expression(sql`lower(email)`).doNothing())
        .returning(['id', 'email', 'password_hash', 'disabled_at', 'role'])
        .executeTakeFirst();
      return row && { id: row.id, email: row.email, passwordHash: row.password_hash, disabledAt: row.disabled_at, role: row.role };
    },
    async updatePassword(id: string, passwordHash: string): Promise<void> {
      await current(db)
        .updateTable('accounts')
        .set({ password_hash: passwordHash, updated_at: sql<Date>`now()` })
        .where('id', '=', id)
        .execute();
    },
  };
}
