/**
 * Local user accounts: creation and password sign-in.
 */
import type { DB } from '../db/database.ts';
import { createAccountsRepository, type Account, type Role } from './accounts.repository.ts';
import { MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, dummyPasswordHash, hashPassword, verifyPassword } from './passwords.ts';

const EMAIL = /^[^\s@]+@[^\s@]+$/;

export class AccountInputError extends Error {
  constructor(
    readonly code: 'invalid_email' | 'weak_password' | 'account_exists',
    message: string,
  ) {
    super(message);
  }
}

export function createAccountsService(deps: { db: DB }) {
  const repo = createAccountsRepository(deps.db);

  return {
    async create(email: string, password: string, role: Role = 'user'): Promise<Account> {
      const normalized = email.trim();
      if (!EMAIL.test(normalized) || normalized.length > 320) {
        throw new AccountInputError('invalid_email', `"${email}" is not an email address`);
      }
      if (password.length < MIN_PASSWORD_LENGTH || password.length > MAX_PASSWORD_LENGTH) {
        throw new AccountInputError('weak_password', `the password must have ${MIN_PASSWORD_LENGTH} to ${MAX_PASSWORD_LENGTH} characters`);
      }
      const created = await repo.insert(normalized, await hashPassword(password), role);
      if (!created) throw new AccountInputError('account_exists', `an account for ${normalized} already exists`);
      return created;
    },

    async setPassword(email: string, password: string): Promise<void> {
      if (password.length < MIN_PASSWORD_LENGTH || password.length > MAX_PASSWORD_LENGTH) {
        throw new AccountInputError('weak_password', `the password must have ${MIN_PASSWORD_LENGTH} to ${MAX_PASSWORD_LENGTH} characters`);
      }
      const account = await repo.findByEmail(email.trim());
      if (!account) throw new AccountInputError('invalid_email', `no account for ${email}`);
      await repo.updatePassword(account.id, await hashPassword(password));
    },

    /** The account for these credentials, or undefined. Takes the same time whether or not the email exists. */
    async authenticate(email: string, password: string): Promise<Account | undefined> {
      if (password.length > MAX_PASSWORD_LENGTH) return undefined;
      const account = await repo.findByEmail(email.trim());
      if (!account) {
        await verifyPassword(await dummyPasswordHash(), password);
        return undefined;
      }
      const ok = await verifyPassword(account.passwordHash, password);
      return ok && !account.disabledAt ? account : undefined;
    },

    findActiveById: (id: string) => repo.findActiveById(id),
  };
}

export type AccountsService = ReturnType<typeof createAccountsService>;
