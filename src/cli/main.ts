/**
 * The `gatehouse` command: serve, migrate, user, admin, resource, client, connection. Every change
 * an administrator can make in the console is here too, and records the same audit event, with
 * `cli:<os user>` as the actor.
 */
import { parseArgs } from 'node:util';
import { AccountInputError, AccountNotFoundError, createAccountsService, type AccountsService } from '../accounts/accounts.service.ts';
import { ConfigError, loadConfig, parseDuration, type Config } from '../config/config.ts';
import { DatabaseInUseError, openDatabase, type DatabaseHandle } from '../db/database.ts';
import { ensureSchema, SchemaMismatchError } from '../db/migrator.ts';
import { describeJanitorReport, runJanitor } from '../app/janitor.ts';
import { createLogger } from '../http/logger.ts';
import { ResourceExistsError } from '../resources/resources.repository.ts';
import { createConnectionsRepository, type Connection } from '../oidc/connections.repository.ts';
import {
  ResourceInputError,
  ResourceNotFoundError,
  createResourcesService,
  type UpdateResourceInput,
} from '../resources/resources.service.ts';
import { userInfo } from 'node:os';
import { readFile } from 'node:fs/promises';
import { createAuditKeys } from '../audit/audit-keys.ts';
import { createAuditSealer, describeSealOutcome } from '../audit/sealer.ts';
import { exportCheckpoints, unsealedThreshold, verifyAuditTrail, type AuditReport } from '../audit/verify.ts';
import { createKeysService } from '../keys/keys.service.ts';
import { rotateSigningKey } from '../keys/rotation.ts';
import { rewrapSecrets } from '../keys/rewrap.ts';
import { createSecretBox } from '../keys/secret-box.ts';
import { createAuditLog, type AuditLog } from '../audit/audit-log.ts';
import { createAuditSink } from '../audit/audit-sink.ts';
import type { ClientRecord } from '../clients/clients.repository.ts';
import { ClientInputError, ClientNotFoundError, createClientsService } from '../clients/clients.service.ts';
import type { ClientStatus, ResourceScope } from '../db/schema.ts';
import { readSecret } from './prompt.ts';
import { createAdminOperations } from '../admin/operations.ts';
import type { DB } from '../db/database.ts';

const USAGE = `Usage: gatehouse <command>

  serve                         run the server (default)
  migrate                       apply pending database migrations
  user add EMAIL                create a user; the password is prompted for, or read from stdin
  user set-password EMAIL       change a user's password
  user list [--json]            list users and administrators
  user disable EMAIL            block sign-in and every refresh token of the user; sign
                                their browsers out
  user enable EMAIL             let a disabled user sign in again; their connections work again
  audit verify [--checkpoints FILE]
                                check the audit trail: every event's MAC, the signed checkpoints
                                and what they sealed, the old hash chain; with FILE (the audit
                                sink's JSON lines, or an export), that each checkpoint in it is in
                                the database; exit 3, naming them, if anything was tampered with
  audit seal                    seal the committed audit events into a signed checkpoint now
                                (servers do it every GATEHOUSE_AUDIT_SEAL_INTERVAL)
  audit checkpoints             print every checkpoint as a JSON line, to keep outside the database
  keys list [--json]            signing keys and their state (never private material)
  keys rotate [--lead 10m]      publish a new signing key now; it signs after the lead time, and
                                the old key stays published until its tokens have expired
  keys rewrap                   re-encrypt every stored secret under the current
                                GATEHOUSE_KEY_ENCRYPTION_KEY (after replacing it); exit 3,
                                changing nothing, if a secret fits no configured key
  admin create EMAIL            create an administrator (console sign-in); the password is
                                prompted for, or read from stdin
  resource add URI --name NAME --scope NAME=DESCRIPTION [--scope …]
               [--scope-includes BROAD=NARROW[,NARROW…] …]
               [--default-scope NAME …] [--access-token-ttl 10m]
                                register an MCP server; --scope-includes declares that scope
                                BROAD satisfies the narrower scopes NARROW (for resource servers)
  resource edit URI [--name NAME] [--scope NAME=DESCRIPTION …]
                [--scope-includes BROAD=NARROW[,NARROW…] …] [--default-scope NAME …]
                [--access-token-ttl 10m]
                                change an MCP server (never its URI); --scope replaces the
                                list; --scope-includes replaces what BROAD includes (BROAD=
                                for nothing); what is not given keeps its value, includes too
  resource list [--json]        list registered MCP servers
  resource remove URI           unregister an MCP server
  client list [--pending | --status STATUS] [--json]
                                list clients (newest first)
  client show ID [--json]       one client: how it arrived, redirect URIs, status, ceiling
  client approve ID --resource URI --scopes "A B" [--resource URI --scopes "…" …]
                                approve a client; its ceiling becomes exactly these MCP
                                servers and scopes (approve again to change the ceiling)
  client reject ID [--reason TEXT]
  client suspend ID [--reason TEXT]
                                reject or suspend a client; its grants and refresh tokens
                                are revoked at once
  connection list [--client ID] [--user EMAIL] [--json]
                                who let which client use which MCP server (newest first)
  connection revoke GRANT_ID    revoke one: its refresh tokens stop working, and the user is
                                asked to consent again next time
  janitor [--json]              delete expired tokens, codes, sessions and interactions, and
                                clients pending longer than GATEHOUSE_PENDING_CLIENT_TTL; one
                                instance at a time (servers also run it every
                                GATEHOUSE_SWEEP_INTERVAL)

Settings come from environment variables; see the README.`;

class UsageError extends Error {}

/** Who acts, in the audit trail. */
const cliActor = () => `cli:${userInfo().username}`;

/**
 * Opens the database for one command, with the audit log the server would use: events a command
 * records stream to GATEHOUSE_AUDIT_SINK too — to stderr when the sink is stdout, so that a
 * command's own output (`--json`) stays parseable.
 */
async function withDatabase<T>(config: Config, fn: (db: DatabaseHandle & { audit: AuditLog }) => Promise<T>): Promise<T> {
  const database = await openDatabase({ url: config.databaseUrl, dataDir: config.dataDir, poolSize: 2, timeoutMs: config.databaseTimeout * 1000 });
  const sink = createAuditSink(config.auditSink === 'stdout' ? 'stderr' : config.auditSink);
  const keys = createAuditKeys(config.keyEncryptionKey, config.previousKeyEncryptionKeys);
  try {
    await ensureSchema(database.db, { migrate: config.migrateOnStart });
    const audit = createAuditLog({ db: database.db, sink, keys });
    try {
      return await fn({ ...database, audit });
    } finally {
      // What the command recorded is sealed before it exits, so an idle system has no unsealed
      // events. Its outcome (done, or another instance sealing) changes nothing for the command.
      if (audit.recorded > 0) {
        await createAuditSealer({ db: database.db, databaseUrl: config.databaseUrl, keys, sink })
          .seal()
          .catch((err: unknown) =>
            process.stderr.write(`gatehouse: warning: the audit events of this command are not sealed yet (${(err as Error).message}); a running server seals them within GATEHOUSE_AUDIT_SEAL_INTERVAL\n`),
          );
      }
    }
  } finally {
    await sink?.close();
    await database.close();
  }
}

async function serve(config: Config) {
  const logger = createLogger(config.logLevel);
  // Loaded only to serve: the server's graph (oidc-provider, Koa, views) costs every other command
  // most of its start-up time.
  const { startServer } = await import('../app/server.ts');
  const running = await startServer(config, logger);
  // Signal handlers first: whoever reads the banner below may stop the server at once.
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ event: 'server.stopping', signal, timeoutSeconds: config.shutdownTimeout }, 'stopped accepting connections; draining');
    // A safety net past the bound: stop() is bounded itself, so this fires only if something hangs.
    setTimeout(() => {
      logger.error({ event: 'server.stop_hung' }, 'shutdown did not finish in time: exiting');
      process.exit(1);
    }, (config.shutdownTimeout + 5) * 1000).unref();
    const started = Date.now();
    const { forced } = await running.stop();
    logger.info({ event: 'server.stopped', forced, ms: Date.now() - started }, forced ? 'stopped (connections still busy at the bound were closed)' : 'stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  const users = await running.database.db
    .selectFrom('accounts')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .executeTakeFirstOrThrow();
  const lines = [
    '',
    `  Gatehouse is running.`,
    `  Issuer:     ${config.issuer}`,
    `  Metadata:   ${config.issuer}/.well-known/oauth-authorization-server`,
    `  Listening:  ${running.url}`,
    `  Admin:      ${config.adminUrl} (listening on ${running.adminUrl})`,
    `  Database:   ${running.database.kind === 'pglite' ? `embedded (${config.dataDir})` : 'PostgreSQL'}`,
  ];
  if (Number(users.n) === 0) {
    lines.push(
      '',
      '  No users yet. Create the first one with:',
      '    npm run gatehouse -- user add you@example.com',
      '  and register the MCP server(s) Gatehouse issues tokens for with:',
      '    npm run gatehouse -- resource add https://mcp.example.com --name "Example MCP" --scope "tools:read=Read your data"',
    );
    if (running.database.kind === 'pglite') {
      lines.push('  (the embedded database allows one process at a time: stop the server while you run these)');
    }
  }
  process.stdout.write(`${lines.join('\n')}\n\n`);

}

/** The audited administrative operations, as the console and the API run them. */
function operationsFor(db: DB, audit: AuditLog) {
  const resources = createResourcesService({ db });
  return createAdminOperations({ db, resources, audit, clients: createClientsService({ db, resources, audit }), connections: createConnectionsRepository(db), accounts: createAccountsService({ db }) });
}

async function keysCommand(config: Config, args: string[]): Promise<number> {
  const { positionals, values } = parseArgs({ args, allowPositionals: true, options: { json: { type: 'boolean' }, lead: { type: 'string' } } });
  const [action] = positionals;
  if ((action !== 'list' && action !== 'rotate' && action !== 'rewrap') || positionals.length > 1) throw new UsageError('usage: gatehouse keys list|rotate|rewrap');
  return withDatabase(config, async ({ db, audit }) => {
    const secretBox = createSecretBox(config.keyEncryptionKey, config.previousKeyEncryptionKeys);
    if (action === 'rewrap') {
      const report = await rewrapSecrets({ db, secretBox, audit }, { actor: cliActor() });
      if (report.failed.length) {
        process.stderr.write(
          `gatehouse: ${report.failed.length} stored secret(s) fit neither GATEHOUSE_KEY_ENCRYPTION_KEY nor any key in GATEHOUSE_PREVIOUS_KEY_ENCRYPTION_KEYS; nothing was changed:\n` +
            report.failed.map((f) => `  - ${f.record}: ${f.reason}\n`).join(''),
        );
        return 3;
      }
      const secrets = (n: number) => `${n} secret${n === 1 ? '' : 's'}`;
      process.stdout.write(
        `Re-encrypted ${secrets(report.rewrapped)} under the current key-encryption key; ${report.alreadyCurrent} ${report.alreadyCurrent === 1 ? 'was' : 'were'} already under it. ` +
          'Remove GATEHOUSE_PREVIOUS_KEY_ENCRYPTION_KEYS from every instance.\n',
      );
      return 0;
    }
    const keys = createKeysService({ db, secretBox });
    if (action === 'rotate') {
      const lead = values.lead === undefined ? config.keyPublishLead : parseDuration(values.lead);
      if (lead === undefined) throw new UsageError('--lead must be a duration such as 0, 10m or 1h');
      await keys.ensure();
      const rotated = await rotateSigningKey(
        { keys, resources: createResourcesService({ db }), audit },
        { leadSeconds: lead, defaultTokenTtl: config.accessTokenTtl, actor: `cli:${userInfo().username}` },
      );
      process.stdout.write(
        `New signing key ${rotated.kid} is published now and signs from ${rotated.activatesAt.toISOString()}; ` +
          `the previous key stays published until ${rotated.retiredUnpublishAt.toISOString()}. Running servers pick this up within ${config.keyCheckInterval} s (GATEHOUSE_KEY_CHECK_INTERVAL).\n`,
      );
      return 0;
    }
    const list = await keys.list();
    if (values.json) {
      process.stdout.write(`${JSON.stringify(list.map(({ publicJwk: _p, ...k }) => k), null, 2)}\n`);
      return 0;
    }
    if (!list.length) process.stdout.write('No signing keys yet: they are created when the server first starts.\n');
    const when = (d: Date | null) => (d ? d.toISOString() : '-');
    for (const k of list) {
      process.stdout.write(`${k.state.padEnd(11)}  ${k.kid}  ${k.alg}  created ${when(k.createdAt)}  signs from ${when(k.activatesAt ?? k.createdAt)}  retires ${when(k.retiresAt)}  unpublished ${when(k.unpublishAt)}\n`);
    }
    return 0;
  });
}

/** `audit verify` for people: a summary when intact, the problems (exit 3) when not. */
function printAuditReport(report: AuditReport, threshold: number): number {
  const checkpoints = (n: number) => `${n} checkpoint${n === 1 ? '' : 's'}`;
  if (report.problems.length === 0) {
    const head = report.head ? ` (head: checkpoint ${report.head.seq}, ${report.head.digest}, signed by key ${report.head.keyId})` : '';
    const legacy = report.legacy ? `; ${report.legacy} written before migration 0009 also verify by their hash chain` : '';
    const external = report.external ? ` Every one of the ${report.external.checkpoints} checkpoints in the file is in the database, unchanged.` : '';
    process.stdout.write(
      `The audit trail is intact: ${report.events} events, ${report.sealed} sealed in ${checkpoints(report.checkpoints)}${head}, ` +
        `${report.unsealed} waiting for the next seal (reported once older than ${threshold} s)${legacy}.${external}\n`,
    );
    for (const note of report.notes) process.stdout.write(`  note: ${note}\n`);
    return 0;
  }
  process.stderr.write(`gatehouse: the audit trail was tampered with (${report.events} events and ${checkpoints(report.checkpoints)} checked):\n`);
  for (const p of report.problems) process.stderr.write(`  - ${p.subject} ${p.id}: ${p.problem}\n`);
  if (report.omitted) process.stderr.write(`  … and ${report.omitted} more\n`);
  for (const note of report.notes) process.stderr.write(`  note: ${note}\n`);
  return 3;
}

async function auditCommand(config: Config, args: string[]): Promise<number> {
  const usage = 'usage: gatehouse audit verify [--checkpoints FILE], gatehouse audit seal, or gatehouse audit checkpoints';
  const { positionals, values } = parseArgs({ args, allowPositionals: true, options: { checkpoints: { type: 'string' } } });
  const [action] = positionals;
  if (positionals.length !== 1 || !['verify', 'seal', 'checkpoints'].includes(action!) || (values.checkpoints !== undefined && action !== 'verify')) {
    throw new UsageError(usage);
  }
  let external: unknown[] | undefined;
  if (values.checkpoints !== undefined) {
    let text: string;
    try {
      text = await readFile(values.checkpoints, 'utf8');
    } catch (err) {
      throw new UsageError(`--checkpoints ${values.checkpoints}: ${(err as Error).message}`);
    }
    // A sink file holds event lines too (and, with stdout, perhaps log lines): only checkpoints count.
    external = text.split('\n').flatMap((line) => {
      if (!line.trim()) return [];
      try {
        return [JSON.parse(line) as unknown];
      } catch {
        return [];
      }
    });
  }
  const keys = createAuditKeys(config.keyEncryptionKey, config.previousKeyEncryptionKeys);
  return withDatabase(config, async ({ db }) => {
    if (action === 'seal') {
      const sink = createAuditSink(config.auditSink === 'stdout' ? 'stderr' : config.auditSink);
      try {
        const outcome = await createAuditSealer({ db, databaseUrl: config.databaseUrl, keys, sink }).seal();
        process.stdout.write(`${describeSealOutcome(outcome)}\n`);
        return outcome.ran && outcome.invalid.length ? 3 : 0;
      } finally {
        await sink?.close();
      }
    }
    if (action === 'checkpoints') {
      for await (const line of exportCheckpoints(db, keys)) process.stdout.write(`${JSON.stringify(line)}\n`);
      return 0;
    }
    const threshold = unsealedThreshold(config.auditSealInterval);
    return printAuditReport(await verifyAuditTrail(db, keys, { unsealedAfter: threshold, external }), threshold);
  });
}

async function adminCommand(config: Config, args: string[]) {
  const [action, email] = args;
  if (action !== 'create' || !email) throw new UsageError('usage: gatehouse admin create EMAIL');
  const password = await readSecret(`Password for ${email}: `, true);
  await withDatabase(config, async ({ db, audit }) => {
    const account = await operationsFor(db, audit).createUser(email, password, 'admin', cliActor());
    process.stdout.write(`Created administrator ${account.email}. Sign in at ${config.adminUrl}/sign-in\n`);
  });
}

/** The account with this email, or a usage error naming it. */
async function accountByEmail(accounts: AccountsService, email: string) {
  const account = await accounts.getByEmail(email);
  if (!account) throw new UsageError(`no account for ${email}`);
  return account;
}

async function userCommand(config: Config, args: string[]) {
  const { positionals, values } = parseArgs({ args, allowPositionals: true, options: { json: { type: 'boolean' } } });
  const [action, email] = positionals;
  const usage = 'usage: gatehouse user add|set-password|disable|enable EMAIL, or gatehouse user list [--json]';
  if (action === 'list') {
    return withDatabase(config, async ({ db }) => {
      const list = await createAccountsService({ db }).list();
      if (values.json) return void process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
      if (!list.length) process.stdout.write('No users yet.\n');
      for (const u of list) process.stdout.write(`${(u.disabledAt ? 'disabled' : 'active').padEnd(8)}  ${u.role.padEnd(5)}  ${u.email}  (${u.id})\n`);
    });
  }
  if (!email) throw new UsageError(usage);
  if (action === 'disable' || action === 'enable') {
    return withDatabase(config, async ({ db, audit }) => {
      const account = await accountByEmail(createAccountsService({ db }), email);
      const operations = operationsFor(db, audit);
      const changed = action === 'disable' ? await operations.disableUser(account.id, undefined, cliActor()) : await operations.enableUser(account.id, cliActor());
      process.stdout.write(
        action === 'disable'
          ? `Disabled ${changed.email}: they cannot sign in, and their refresh tokens stop working until they are enabled again (${changed.endedSessions} sign-in sessions ended).\n`
          : `Enabled ${changed.email}: they can sign in, and their connections work again.\n`,
      );
    });
  }
  if (action !== 'add' && action !== 'set-password') throw new UsageError(usage);
  const password = await readSecret(`Password for ${email}: `, true);
  await withDatabase(config, async ({ db, audit }) => {
    const operations = operationsFor(db, audit);
    if (action === 'add') {
      const account = await operations.createUser(email, password, 'user', cliActor());
      process.stdout.write(`Created user ${account.email} (${account.id}).\n`);
    } else {
      const account = await accountByEmail(createAccountsService({ db }), email);
      const changed = await operations.resetPassword(account.id, password, cliActor());
      process.stdout.write(`Changed the password of ${email} (${changed.endedSessions} sign-in sessions ended).\n`);
    }
  });
}

async function resourceCommand(config: Config, args: string[]) {
  const { positionals, values } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      name: { type: 'string' },
      scope: { type: 'string', multiple: true },
      'scope-includes': { type: 'string', multiple: true },
      'default-scope': { type: 'string', multiple: true },
      'access-token-ttl': { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  const [action, uri] = positionals;
  const scopesOf = (specs: string[]): ResourceScope[] =>
    specs.map((s) => {
      const i = s.indexOf('=');
      if (i <= 0) throw new UsageError(`--scope "${s}" must be NAME=DESCRIPTION`);
      return { name: s.slice(0, i).trim(), description: s.slice(i + 1).trim() };
    });
  // --scope-includes BROAD=NARROW[,NARROW…]: what BROAD includes, replaced (empty: nothing).
  const includes = new Map<string, string[]>();
  for (const spec of values['scope-includes'] ?? []) {
    const i = spec.indexOf('=');
    if (i <= 0) throw new UsageError(`--scope-includes "${spec}" must be BROAD=NARROW[,NARROW…]`);
    const broad = spec.slice(0, i).trim();
    if (includes.has(broad)) throw new UsageError(`--scope-includes names "${broad}" twice: give everything it includes in one`);
    includes.set(broad, spec.slice(i + 1).split(/[\s,]+/).filter(Boolean));
  }
  /** `scopes` with the --scope-includes applied; every BROAD must be one of them. */
  const withIncludes = (scopes: ResourceScope[]): ResourceScope[] => {
    for (const broad of includes.keys()) {
      if (!scopes.some((s) => s.name === broad)) throw new UsageError(`--scope-includes "${broad}=…": "${broad}" is not one of the MCP server's scopes`);
    }
    return scopes.map((s) => (includes.has(s.name) ? { ...s, includes: includes.get(s.name)! } : s));
  };
  const describeIncludes = (s: ResourceScope) => (s.includes?.length ? ` (includes ${s.includes.join(', ')})` : '');
  const ttlOf = (value: string) => {
    const ttl = parseDuration(value);
    if (ttl === undefined) throw new UsageError('--access-token-ttl must be a duration such as 600, 10m or 1h');
    return ttl;
  };
  await withDatabase(config, async ({ db, audit }) => {
    const resources = createResourcesService({ db });
    if (action === 'list') {
      const list = await resources.list();
      if (values.json) {
        process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
        return;
      }
      if (!list.length) process.stdout.write('No MCP servers registered yet.\n');
      for (const r of list) {
        process.stdout.write(
          `${r.uri}  ${r.name}  (access tokens ${r.accessTokenTtl}s)\n` +
            r.scopes.map((s) => `    ${r.defaultScopes.includes(s.name) ? '*' : ' '} ${s.name}: ${s.description}${describeIncludes(s)}\n`).join(''),
        );
      }
      return;
    }
    if (action === 'add' && uri) {
      const name = values.name;
      if (!name) throw new UsageError('--name is required');
      const scopes = withIncludes(scopesOf(values.scope ?? []));
      const ttl = values['access-token-ttl'] ? ttlOf(values['access-token-ttl']) : config.accessTokenTtl;
      const r = await operationsFor(db, audit).addResource({ uri, name, scopes, defaultScopes: values['default-scope'], accessTokenTtl: ttl }, cliActor());
      process.stdout.write(`Registered ${r.uri} (${r.name}) with scopes ${r.scopes.map((s) => `${s.name}${describeIncludes(s)}`).join(', ')}.\n`);
      return;
    }
    if (action === 'edit' && uri) {
      const changes: Partial<UpdateResourceInput> = {};
      if (values.name !== undefined) changes.name = values.name;
      if (values.scope || includes.size) {
        const current = await resources.resolve(uri);
        if (!current) throw new ResourceNotFoundError(`no resource ${uri} is registered`);
        // A scope given again with --scope keeps what it includes unless --scope-includes says otherwise.
        const kept = new Map(current.scopes.map((s) => [s.name, s.includes]));
        const scopes = values.scope ? scopesOf(values.scope).map((s) => (kept.get(s.name) ? { ...s, includes: kept.get(s.name)! } : s)) : current.scopes;
        changes.scopes = withIncludes(scopes);
      }
      if (values['default-scope']) changes.defaultScopes = values['default-scope'];
      if (values['access-token-ttl'] !== undefined) changes.accessTokenTtl = ttlOf(values['access-token-ttl']);
      if (!Object.keys(changes).length) throw new UsageError('nothing to change: give --name, --scope, --scope-includes, --default-scope or --access-token-ttl');
      const r = await operationsFor(db, audit).updateResource(uri, changes, cliActor());
      process.stdout.write(
        `Updated ${r.uri} (${r.name}): scopes ${r.scopes.map((s) => `${s.name}${describeIncludes(s)}`).join(', ')}; default scopes ${r.defaultScopes.join(', ')}; access tokens ${r.accessTokenTtl}s.\n`,
      );
      return;
    }
    if (action === 'remove' && uri) {
      const resource = await resources.resolve(uri);
      if (!resource) throw new UsageError(`no resource ${uri} is registered`);
      await operationsFor(db, audit).removeResource(resource, cliActor());
      process.stdout.write(`Removed ${uri}.\n`);
      return;
    }
    throw new UsageError('usage: gatehouse resource add|edit|list|remove …');
  });
}

const STATUSES: ClientStatus[] = ['pending', 'approved', 'rejected', 'suspended'];

function describeCeiling(client: ClientRecord): string {
  if (client.ceiling === null) return 'no ceiling (every scope each MCP server offers)';
  const entries = Object.entries(client.ceiling);
  return entries.length ? entries.map(([uri, scopes]) => `${uri}: ${scopes.join(' ')}`).join('; ') : 'nothing';
}

function describeClient(c: ClientRecord): string {
  const lines = [
    `${c.clientId}`,
    `  name:          ${c.name}`,
    `  status:        ${c.status}${c.statusReason ? ` (${c.statusReason})` : ''}${c.statusChangedBy ? ` by ${c.statusChangedBy}` : ''}`,
    `  arrived:       ${c.createdAt.toISOString()} by ${c.registrationMethod === 'cimd' ? 'metadata document' : 'dynamic registration'}` +
      `${c.sourceIp ? ` from ${c.sourceIp}` : ''}${c.userAgent ? ` (${c.userAgent})` : ''}`,
    `  redirect URIs: ${c.redirectUris.join(' ')}`,
  ];
  if (c.approvedRedirectUris && c.status === 'pending') lines.push(`  approved URIs: ${c.approvedRedirectUris.join(' ')} (before the change)`);
  lines.push(`  ceiling:       ${describeCeiling(c)}`);
  return `${lines.join('\n')}\n`;
}

/**
 * The id that follows an action word (`client approve ID …`, `connection revoke GRANT_ID`), taken
 * by position before the options are parsed: oidc-provider's ids are base64url and about 1 in 64
 * begins with `-`, which parseArgs would read as an unknown option (issue 16). The word after the
 * action is the id unless it is one of the command's own options.
 */
function splitIdArgument(args: string[], options: Record<string, unknown>): { args: string[]; id: string | undefined } {
  const [action, next, ...rest] = args;
  const isOption = (word: string) => word === '--' || (word.startsWith('--') && Object.hasOwn(options, word.slice(2).split('=')[0]!));
  if (action === undefined || next === undefined || isOption(next)) return { args, id: undefined };
  return { args: [action, ...rest], id: next };
}

async function clientCommand(config: Config, argv: string[]) {
  const options = {
    pending: { type: 'boolean' },
    status: { type: 'string' },
    json: { type: 'boolean' },
    resource: { type: 'string', multiple: true },
    scopes: { type: 'string', multiple: true },
    reason: { type: 'string' },
  } as const;
  const split = argv[0] === 'list' ? { args: argv, id: undefined } : splitIdArgument(argv, options);
  const args = split.args;
  const { positionals, values } = parseArgs({
    args,
    allowPositionals: true,
    options,
  });
  const [action, positionalId] = positionals;
  const clientId = split.id ?? positionalId;
  const by = cliActor();
  await withDatabase(config, async ({ db, audit }) => {
    const clients = createClientsService({ db, resources: createResourcesService({ db }), audit });
    const print = (c: ClientRecord) => process.stdout.write(values.json ? `${JSON.stringify(c, null, 2)}\n` : describeClient(c));
    if (action === 'list') {
      const status = values.pending ? 'pending' : (values.status as ClientStatus | undefined);
      if (status && !STATUSES.includes(status)) throw new UsageError(`--status must be one of ${STATUSES.join(', ')}`);
      const list = await clients.list({ status });
      if (values.json) return void process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
      if (!list.length) process.stdout.write(status ? `No ${status} clients.\n` : 'No clients yet.\n');
      for (const c of list) process.stdout.write(`${c.status.padEnd(9)}  ${c.createdAt.toISOString()}  ${c.clientId}  ${c.name}\n`);
      return;
    }
    if (!clientId) throw new UsageError('usage: gatehouse client list|show|approve|reject|suspend …');
    if (action === 'show') {
      const c = await clients.get(clientId);
      if (!c) throw new ClientNotFoundError(`no client ${clientId} is known`);
      return print(c);
    }
    if (action === 'approve') {
      const resources = values.resource ?? [];
      const scopes = values.scopes ?? [];
      if (!resources.length || resources.length !== scopes.length) {
        throw new UsageError('give each --resource URI its --scopes "A B" (one --scopes per --resource)');
      }
      const entries = resources.map((resource, i) => ({ resource, scopes: scopes[i]!.split(/[\s,]+/).filter(Boolean) }));
      return print(await clients.approve(clientId, entries, by));
    }
    if (action === 'reject') return print(await clients.reject(clientId, by, values.reason ?? null));
    if (action === 'suspend') return print(await clients.suspend(clientId, by, values.reason ?? null));
    throw new UsageError('usage: gatehouse client list|show|approve|reject|suspend …');
  });
}

function describeConnection(c: Connection): string {
  const lines = [
    `${c.grantId}`,
    `  user:      ${c.email ?? '(account deleted)'}${c.accountDisabled ? ' (disabled)' : ''}`,
    `  client:    ${c.clientName ?? '(client deleted)'} (${c.clientId})`,
    ...Object.entries(c.resources).map(([uri, scopes]) => `  resource:  ${uri}: ${scopes.join(' ')}`),
    `  granted:   ${c.grantedAt.toISOString()}`,
    `  last used: ${c.lastUsedAt ? c.lastUsedAt.toISOString() : 'never'}`,
  ];
  return `${lines.join('\n')}\n`;
}

async function connectionCommand(config: Config, argv: string[]) {
  const options = { client: { type: 'string' }, user: { type: 'string' }, json: { type: 'boolean' } } as const;
  const split = argv[0] === 'revoke' ? splitIdArgument(argv, options) : { args: argv, id: undefined };
  const { positionals, values } = parseArgs({
    args: split.args,
    allowPositionals: true,
    options,
  });
  const [action, positionalId] = positionals;
  const grantId = split.id ?? positionalId;
  await withDatabase(config, async ({ db, audit }) => {
    const connections = createConnectionsRepository(db);
    if (action === 'list') {
      const account = values.user ? await accountByEmail(createAccountsService({ db }), values.user) : undefined;
      const list = await connections.list({ clientId: values.client, accountId: account?.id, limit: 1000 });
      if (values.json) return void process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
      if (!list.length) process.stdout.write(values.client || values.user ? 'No connections match.\n' : 'No connections yet.\n');
      for (const c of list) process.stdout.write(describeConnection(c));
      return;
    }
    if (action === 'revoke' && grantId) {
      const revoked = await operationsFor(db, audit).revokeConnection(grantId, cliActor());
      if (!revoked) throw new UsageError(`no connection ${grantId}: it may have been revoked or expired`);
      process.stdout.write(`Revoked the connection of ${revoked.email ?? revoked.accountId} to ${revoked.clientName ?? revoked.clientId}: its refresh tokens no longer work.\n`);
      return;
    }
    throw new UsageError('usage: gatehouse connection list [--client ID] [--user EMAIL] [--json], or gatehouse connection revoke GRANT_ID');
  });
}

/**
 * One janitor run, for cron (with GATEHOUSE_SWEEP_INTERVAL=0) or by hand. Exit 0 when it ran or
 * another instance was running it (then there is nothing to do); the report goes to stdout.
 */
async function janitorCommand(config: Config, args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { json: { type: 'boolean' } } });
  if (positionals.length) throw new UsageError('usage: gatehouse janitor [--json]');
  return withDatabase(config, async ({ db, audit }) => {
    const outcome = await runJanitor({
      db,
      databaseUrl: config.databaseUrl,
      clients: createClientsService({ db, resources: createResourcesService({ db }), audit }),
      pendingClientTtl: config.pendingClientTtl,
    });
    if (values.json) process.stdout.write(`${JSON.stringify(outcome, null, 2)}\n`);
    else process.stdout.write(outcome.ran ? `${describeJanitorReport(outcome.report)}\n` : 'Another Gatehouse instance is running the janitor right now; nothing done.\n');
    return 0;
  });
}

async function main(argv: string[]): Promise<number> {
  const [command = 'serve', ...rest] = argv;
  if (command === 'help' || command === '--help' || command === '-h') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const config = loadConfig();
  switch (command) {
    case 'serve':
      await serve(config);
      return -1; // keep running
    case 'migrate': {
      const database = await openDatabase({ url: config.databaseUrl, dataDir: config.dataDir, poolSize: 1 });
      try {
        // Refuses a database migrated by a newer Gatehouse; Kysely's lock serialises concurrent runs.
        const applied = await ensureSchema(database.db, { migrate: true });
        process.stdout.write(applied.length ? `Applied ${applied.join(', ')}.\n` : 'The database is up to date.\n');
      } finally {
        await database.close();
      }
      return 0;
    }
    case 'user':
      await userCommand(config, rest);
      return 0;
    case 'resource':
      await resourceCommand(config, rest);
      return 0;
    case 'client':
      await clientCommand(config, rest);
      return 0;
    case 'admin':
      await adminCommand(config, rest);
      return 0;
    case 'audit':
      return auditCommand(config, rest);
    case 'keys':
      return keysCommand(config, rest);
    case 'connection':
      await connectionCommand(config, rest);
      return 0;
    case 'janitor':
      return janitorCommand(config, rest);
    default:
      throw new UsageError(`unknown command "${command}"\n\n${USAGE}`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err: unknown) => {
    const known =
      err instanceof ConfigError ||
      err instanceof UsageError ||
      err instanceof AccountInputError ||
      err instanceof ClientInputError ||
      err instanceof ClientNotFoundError ||
      err instanceof ResourceInputError ||
      err instanceof ResourceExistsError ||
      err instanceof ResourceNotFoundError ||
      err instanceof AccountNotFoundError ||
      err instanceof DatabaseInUseError ||
      err instanceof SchemaMismatchError ||
      // node:util parseArgs: an unknown option, or a missing option value.
      /^ERR_PARSE_ARGS_/.test(String((err as { code?: unknown })?.code ?? ''));
    process.stderr.write(`gatehouse: ${known ? (err as Error).message : (err as Error)?.stack ?? String(err)}\n`);
    process.exit(known ? 2 : 1);
  },
);
