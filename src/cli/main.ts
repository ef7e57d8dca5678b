/**
 * The `gatehouse` command: serve, migrate, user, resource, client.
 */
import { parseArgs } from 'node:util';
import { AccountInputError, createAccountsService } from '../accounts/accounts.service.ts';
import { startServer } from '../app/server.ts';
import { ConfigError, loadConfig, parseDuration, type Config } from '../config/config.ts';
import { DatabaseInUseError, openDatabase, type DatabaseHandle } from '../db/database.ts';
import { migrateToLatest, pendingMigrations } from '../db/migrator.ts';
import { createLogger } from '../http/logger.ts';
import { ResourceExistsError } from '../resources/resources.repository.ts';
import { ResourceInputError, createResourcesService } from '../resources/resources.service.ts';
import { userInfo } from 'node:os';
import { createAuditLog } from '../audit/audit-log.ts';
import type { ClientRecord } from '../clients/clients.repository.ts';
import { ClientInputError, ClientNotFoundError, createClientsService } from '../clients/clients.service.ts';
import type { ClientStatus } from '../db/schema.ts';
import { readSecret } from './prompt.ts';

const USAGE = `Usage: gatehouse <command>

  serve                         run the server (default)
  migrate                       apply pending database migrations
  user add EMAIL                create a user; the password is prompted for, or read from stdin
  user set-password EMAIL       change a user's password
  admin create EMAIL            create an administrator (console sign-in); the password is
                                prompted for, or read from stdin
  resource add URI --name NAME --scope NAME=DESCRIPTION [--scope …]
               [--default-scope NAME …] [--access-token-ttl 10m]
                                register an MCP server
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

Settings come from environment variables; see the README.`;

class UsageError extends Error {}

async function withDatabase<T>(config: Config, fn: (db: DatabaseHandle) => Promise<T>): Promise<T> {
  const database = await openDatabase({ url: config.databaseUrl, dataDir: config.dataDir, poolSize: 2 });
  try {
    if (config.migrateOnStart) await migrateToLatest(database.db);
    else {
      const pending = await pendingMigrations(database.db);
      if (pending.length) throw new UsageError(`the database has pending migrations: run \`gatehouse migrate\` first`);
    }
    return await fn(database);
  } finally {
    await database.close();
  }
}

async function serve(config: Config) {
  const logger = createLogger(config.logLevel);
  const running = await startServer(config, logger);
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

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ event: 'server.stopping', signal }, 'draining connections');
    await running.stop();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

async function adminCommand(config: Config, args: string[]) {
  const [action, email] = args;
  if (action !== 'create' || !email) throw new UsageError('usage: gatehouse admin create EMAIL');
  const password = await readSecret(`Password for ${email}: `, true);
  await withDatabase(config, async ({ db }) => {
    const account = await createAccountsService({ db }).create(email, password, 'admin');
    process.stdout.write(`Created administrator ${account.email}. Sign in at ${config.adminUrl}/sign-in\n`);
  });
}

async function userCommand(config: Config, args: string[]) {
  const [action, email] = args;
  if ((action !== 'add' && action !== 'set-password') || !email) throw new UsageError('usage: gatehouse user add|set-password EMAIL');
  const password = await readSecret(`Password for ${email}: `, true);
  await withDatabase(config, async ({ db }) => {
    const accounts = createAccountsService({ db });
    if (action === 'add') {
      const account = await accounts.create(email, password);
      process.stdout.write(`Created user ${account.email} (${account.id}).\n`);
    } else {
      await accounts.setPassword(email, password);
      process.stdout.write(`Changed the password of ${email}.\n`);
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
      'default-scope': { type: 'string', multiple: true },
      'access-token-ttl': { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  const [action, uri] = positionals;
  await withDatabase(config, async ({ db }) => {
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
            r.scopes.map((s) => `    ${r.defaultScopes.includes(s.name) ? '*' : ' '} ${s.name}: ${s.description}\n`).join(''),
        );
      }
      return;
    }
    if (action === 'add' && uri) {
      if (!values.name) throw new UsageError('--name is required');
      const scopes = (values.scope ?? []).map((s) => {
        const i = s.indexOf('=');
        if (i <= 0) throw new UsageError(`--scope "${s}" must be NAME=DESCRIPTION`);
        return { name: s.slice(0, i).trim(), description: s.slice(i + 1).trim() };
      });
      const ttl = values['access-token-ttl'] ? parseDuration(values['access-token-ttl']) : config.accessTokenTtl;
      if (ttl === undefined) throw new UsageError('--access-token-ttl must be a duration such as 600, 10m or 1h');
      const r = await resources.add({
        uri,
        name: values.name,
        scopes,
        defaultScopes: values['default-scope'],
        accessTokenTtl: ttl,
      });
      process.stdout.write(`Registered ${r.uri} (${r.name}) with scopes ${r.scopes.map((s) => s.name).join(', ')}.\n`);
      return;
    }
    if (action === 'remove' && uri) {
      if (!(await resources.remove(uri))) throw new UsageError(`no resource ${uri} is registered`);
      process.stdout.write(`Removed ${uri}.\n`);
      return;
    }
    throw new UsageError('usage: gatehouse resource add|list|remove …');
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

async function clientCommand(config: Config, args: string[]) {
  const { positionals, values } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      pending: { type: 'boolean' },
      status: { type: 'string' },
      json: { type: 'boolean' },
      resource: { type: 'string', multiple: true },
      scopes: { type: 'string', multiple: true },
      reason: { type: 'string' },
    },
  });
  const [action, clientId] = positionals;
  const by = `cli:${userInfo().username}`;
  await withDatabase(config, async ({ db }) => {
    const clients = createClientsService({ db, resources: createResourcesService({ db }), audit: createAuditLog({ db }) });
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
        const applied = await migrateToLatest(database.db);
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
      err instanceof DatabaseInUseError;
    process.stderr.write(`gatehouse: ${known ? (err as Error).message : (err as Error)?.stack ?? String(err)}\n`);
    process.exit(known ? 2 : 1);
  },
);
