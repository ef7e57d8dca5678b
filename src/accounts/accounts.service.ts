/**
 * Local user accounts: creation, password sign-in, and what an administrator does to them
 * (list, disable, enable, reset a password).
 *
 * A disabled account cannot sign in, and its refresh tokens stop working at once: oidc-provider
 * looks the account up (`findAccount`, which uses `findActiveById`) on every refresh and answers
 * `invalid_grant` when it is gone (test/integration/admin-pages.test.ts proves it). Its sign-in
 * sessions are ended; its grants are kept, so enabling the account again restores them (revoke a
 * connection to end it for good).
 * Access tokens already issued stay valid until they expire (minutes; see each MCP server's lifetime).
 */
import type { DB } from '../db/database.ts';
import { createConnectionsRepository } from '../oidc/connections.repository.ts';
import { createAccountsRepository, type Account, type AccountSummary, type Role } from './accounts.repository.ts';
import { MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, dummyPasswordHash, hashPassword, verifyPassword } from './passwords.ts';

const EMAIL = /^[^\s@]+@[^\s@]+$/;

export class AccountInputError extends Error {
  constructor(
    readonly code: 'invalid_email' | 'weak_password' | 'account_exists' | 'cannot_disable_self',
    message: string,
  ) {
    super(message);
  }
}

/** An account after an administrator's change, and how many of its sign-in sessions the change ended. */
export type AccountChange = AccountSummary & { endedSessions: number };

export class AccountNotFoundError extends Error {
  readonly code = 'account_not_found';
}

function checkPassword(password: string): void {
  if (password.length < MIN_PASSWORD_LENGTH || password.length > MAX_PASSWORD_LENGTH) {
    throw new AccountInputError('weak_password', `the password must have ${MIN_PASSWORD_LENGTH} to ${MAX_PASSWORD_LENGTH} characters`);
  }
}

export function createAccountsService(deps: { db: DB }) {
  const repo = createAccountsRepository(deps.db);
  const connections = createConnectionsRepository(deps.db);

  async function setDisabled(id: string, disabled: boolean): Promise<AccountChange> {
    const account = await repo.setDisabled(id, disabled);
    if (!account) throw new AccountNotFoundError(`no account ${id}`);
    // A disabled user's browsers are signed out (their grants stay, for when they are enabled again).
    const endedSessions = disabled ? await connections.endSessions(account.id) : 0;
    return { ...account, endedSessions };
  }

  return {
    async create(email: string, password: string, role: Role = 'user'): Promise<Account> {
      const normalized = email.trim();
      if (!EMAIL.test(normalized) || normalized.length > 320) {
        throw new AccountInputError('invalid_email', `"${email}" is not an email address`);
      }
      checkPassword(password);
      const created = await repo.insert(normalized, await hashPassword(password), role);
      if (!created) throw new AccountInputError('account_exists', `an account for ${normalized} already exists`);
      return created;
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

    /** Every account, by email. */
    list: () => repo.list(),
    /** One account by id (undefined for an unknown or malformed id). */
    get: (id: string) => repo.findSummaryById(id),
    /** One account by email, case-insensitively (undefined when there is none); never its password hash. */
    async getByEmail(email: string): Promise<AccountSummary | undefined> {
      const account = await repo.findByEmail(email.trim());
      return account && repo.findSummaryById(account.id);
    },

    /**
     * Blocks sign-in and every refresh token of the account until it is enabled again, and signs
     * its browsers out. An administrator cannot disable their own account (`actingAccountId`).
     * Run it in a transaction (`inTransaction`) so the two writes stand or fall together.
     */
    async disable(id: string, actingAccountId?: string): Promise<AccountChange> {
      if (actingAccountId && id.toLowerCase() === actingAccountId.toLowerCase()) throw new AccountInputError('cannot_disable_self', 'you cannot disable your own account');
      return setDisabled(id, true);
    },
    enable: (id: string) => setDisabled(id, false),

    /** An administrator sets a new password for the account with this id; its browsers must sign in again. */
    async resetPassword(id: string, password: string): Promise<AccountChange> {
      checkPassword(password);
      const account = await repo.findSummaryById(id);
      if (!account) throw new AccountNotFoundError(`no account ${id}`);
      await repo.updatePassword(account.id, await hashPassword(password));
      return { ...account, endedSessions: await connections.endSessions(account.id) };
    },
  };
}

export type AccountsService = ReturnType<typeof createAccountsService>;
