/**
 * Console: users (the local accounts people sign in with at /authorize, and administrators).
 * List them; add one with an initial password; disable or enable one; set a new password.
 *
 * Disabling blocks sign-in, signs the user's browsers out and stops every refresh token of the
 * account at once (oidc-provider looks the account up on each refresh; see accounts.service.ts).
 * A new password signs their browsers out too. An administrator cannot disable their own account.
 * Each change and its audit event are one transaction.
 */
import Router from '@koa/router';
import type { Context } from 'koa';
import { AccountInputError, AccountNotFoundError, type AccountsService } from '../accounts/accounts.service.ts';
import type { AccountSummary } from '../accounts/accounts.repository.ts';
import type { AdminOperations } from './operations.ts';
import type { AuditLog } from '../audit/audit-log.ts';
import type { DB } from '../db/database.ts';
import type { AdminState, ConsolePage } from './admin-app.ts';

export interface UsersDeps {
  db: DB;
  accounts: AccountsService;
  audit: AuditLog;
  page: ConsolePage;
  /** The audited changes (admin/operations.ts), shared with the API and the CLI. */
  operations: AdminOperations;
}

/** What the list says after a change, by the `done` query parameter. */
const DONE = {
  added: (email) => `Added ${email}. They can sign in now.`,
  disabled: (email) => `Disabled ${email}: they cannot sign in, and their refresh tokens stop working until they are enabled again.`,
  enabled: (email) => `Enabled ${email}: they can sign in, and their connections work again.`,
  password: (email) => `Set a new password for ${email}.`,
} satisfies Record<string, (email: string) => string>;

export function createUsersRouter(deps: UsersDeps): Router<AdminState> {
  const router = new Router<AdminState>();
  const session = (ctx: Context) => (ctx.state as AdminState).session!;
  const by = (ctx: Context) => `admin:${session(ctx).email}`;

  /** The list, with a message about one account (`about`) or the add form (`problem`) when something was wrong. */
  async function listPage(ctx: Context, options: { problem?: string; email?: string; about?: string; rowProblem?: string; status?: number } = {}) {
    const self = session(ctx).accountId;
    const users = (await deps.accounts.list()).map((u) => ({
      ...u,
      self: u.id === self,
      path: `/users/${u.id}`,
      problem: options.about === u.id ? options.rowProblem : undefined,
    }));
    // After a change (?done=<what>&user=<id>): say what happened, in our words, never the URL's.
    const done = ctx.query.done;
    const what = typeof done === 'string' && Object.hasOwn(DONE, done) ? DONE[done as keyof typeof DONE] : undefined;
    const subject = what && options.status === undefined ? users.find((u) => u.id === ctx.query.user) : undefined;
    await deps.page.render(
      ctx,
      'admin/users.njk',
      { title: 'Users', users, problem: options.problem, email: options.email ?? '', done: subject && what!(subject.email) },
      options.status ?? 200,
    );
  }

  const notFound = (ctx: Context) => deps.page.render(ctx, 'admin/not-found.njk', { title: 'Not found', what: 'No such user.' }, 404);

  const backToList = (ctx: Context, done: keyof typeof DONE, account: { id: string }) => {
    ctx.status = 303;
    ctx.redirect(`/users?done=${done}&user=${account.id}`);
  };

  router.get('/users', (ctx) => listPage(ctx));

  router.post('/users', async (ctx) => {
    const form = await deps.page.form(ctx);
    if (!form) return;
    const email = (form.get('email') ?? '').trim();
    const password = form.get('password') ?? '';
    let account;
    try {
      account = await deps.operations.createUser(email, password, 'user', by(ctx));
    } catch (err) {
      if (err instanceof AccountInputError) return listPage(ctx, { problem: err.message, email, status: 400 });
      throw err;
    }
    backToList(ctx, 'added', account);
  });

  const actions = {
    disable: (ctx: Context, id: string) => deps.operations.disableUser(id, session(ctx).accountId, by(ctx)),
    enable: (ctx: Context, id: string) => deps.operations.enableUser(id, by(ctx)),
  } as const;

  for (const [action, run] of Object.entries(actions)) {
    router.post(`/users/:id/${action}`, async (ctx) => {
      const form = await deps.page.form(ctx);
      if (!form) return;
      const id = ctx.params.id!;
      let account: AccountSummary;
      try {
        account = await run(ctx, id);
      } catch (err) {
        if (err instanceof AccountNotFoundError) return notFound(ctx);
        if (err instanceof AccountInputError) return listPage(ctx, { about: id, rowProblem: err.message, status: 400 });
        throw err;
      }
      backToList(ctx, action === 'disable' ? 'disabled' : 'enabled', account);
    });
  }

  router.post('/users/:id/password', async (ctx) => {
    const form = await deps.page.form(ctx);
    if (!form) return;
    const id = ctx.params.id!;
    let account: AccountSummary;
    try {
      account = await deps.operations.resetPassword(id, form.get('password') ?? '', by(ctx));
    } catch (err) {
      if (err instanceof AccountNotFoundError) return notFound(ctx);
      if (err instanceof AccountInputError) return listPage(ctx, { about: id, rowProblem: err.message, status: 400 });
      throw err;
    }
    backToList(ctx, 'password', account);
  });

  return router;
}
