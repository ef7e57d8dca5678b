/**
 * SQL statements (round trips) per Gatehouse operation, counted from the query log: deterministic,
 * unlike timings. The app is built in-process the way test/support/app.ts builds it (buildApp over
 * a database opened with `openDatabase({ url, onQuery })`), on a fresh PostgreSQL database, and
 * driven over real HTTP.
 *
 * Each operation is done twice and the second is counted ("steady state": per-process caches are
 * warm, as they are under load); the first is reported too. Statements sent up to 100 ms after the
 * response are attributed to the operation.
 *
 * Part of `npm run bench`; run it alone with `npx tsx bench/sql-counts.ts` (BENCH_DATABASE_URL).
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import { buildApp } from '../src/app/deps.ts';
import { loadConfig } from '../src/config/config.ts';
import { openDatabase } from '../src/db/database.ts';
import { migrateToLatest } from '../src/db/migrator.ts';
import { createLogger } from '../src/http/logger.ts';
import { createBenchDatabase } from './lib/database.ts';
import { gatehouseEnv } from './lib/gatehouse-env.ts';
import { Browser, RESOURCE, USER, exchangeCode, refresh, registerClient, type Target } from './lib/oauth.ts';

export interface SqlCount {
  operation: string;
  /** Every statement sent, BEGIN/COMMIT included: the round trips. */
  statements: number;
  /** Without BEGIN / COMMIT / ROLLBACK. */
  withoutTransactionControl: number;
  /** The same two numbers for the first of the two operations (cold per-process caches). */
  first: { statements: number; withoutTransactionControl: number };
  /** One line per statement: its verb and table. */
  summary: string[];
  /** The statements themselves, shortened. */
  sql: string[];
  /** For the full flow: statements per HTTP request. */
  steps?: Array<{ step: string; statements: number }>;
}

export interface SqlCounts {
  counts: SqlCount[];
}

const TRANSACTION_CONTROL = /^\s*(begin|commit|rollback|start transaction|savepoint|release)/i;

/** The statement without the comments in front of it (`/* prepare *\/ WITH …` → `WITH …`). */
function withoutLeadingComments(sql: string): string {
  return sql.replace(/^(\s*(\/\*[\s\S]*?\*\/|--[^\n]*(\n|$)))*\s*/, '');
}

const isTransactionControl = (sql: string) => TRANSACTION_CONTROL.test(withoutLeadingComments(sql));

/** "select oidc_payloads", "insert audit_events", "with (rate_limit_counters, oidc_payloads)", "begin"… */
export function describeStatement(sql: string): string {
  const text = withoutLeadingComments(sql).replace(/\s+/g, ' ');
  const verb = (/^\w+/.exec(text)?.[0] ?? '?').toLowerCase();
  if (TRANSACTION_CONTROL.test(text)) return verb;
  const tables = (pattern: RegExp) => [...text.matchAll(pattern)].map((m) => m[1]!.toLowerCase());
  // Quoted identifiers (Kysely) first; then bare ones, skipping `extract(epoch from column - …)`.
  const named = [
    ...tables(/\b(?:from|into|update|join) "([\w.]+)"/gi),
    ...tables(/\b(?:from|into|update|join) ([a-z_][\w.]*)\b(?!\s*[-+*/)])/gi).filter((t) => !['select', 'values', 'lateral', 'set'].includes(t)),
  ];
  const cteNames = new Set(tables(/\b(\w+) as \(/gi));
  const unique = [...new Set(named)].filter((t) => !cteNames.has(t));
  const lock = /\bfor update\b/i.test(text) ? ' for update' : '';
  if (verb === 'with') return `with (${unique.join(', ') || '…'})${lock}`;
  return `${verb} ${unique[0] ?? '…'}${lock}`;
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 100));

export async function countSqlStatements(log: (line: string) => void = () => {}): Promise<SqlCounts> {
  const database = await createBenchDatabase('gatehouse_sqlcount');
  const queries: string[] = [];
  let server: Server | undefined;
  let handle: Awaited<ReturnType<typeof openDatabase>> | undefined;
  try {
    handle = await openDatabase({ url: database.url, poolSize: 10, onQuery: (sql) => queries.push(sql) });
    await migrateToLatest(handle.db);

    let handler: Parameters<typeof createServer>[1] = (_req, res) => {
      res.statusCode = 503;
      res.end();
    };
    server = createServer((req, res) => handler!(req, res));
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    const env = gatehouseEnv({ databaseUrl: database.url, port, adminPort: 0, keyEncryptionKey: randomBytes(32).toString('hex') });
    const config = loadConfig({ ...env, GATEHOUSE_LOG_LEVEL: 'silent' });
    const built = await buildApp(config, handle, createLogger('silent'));
    handler = built.app.callback();
    await built.resources.add({
      uri: RESOURCE,
      name: 'Bench MCP',
      scopes: [
        { name: 'files:read', description: 'Read your files' },
        { name: 'files:write', description: 'Change your files' },
      ],
      defaultScopes: ['files:read'],
      accessTokenTtl: 600,
    });
    await built.accounts.create(USER.email, USER.password);
    const target: Target = { kind: 'gatehouse', issuer: `http://localhost:${port}` };

    const counts: SqlCount[] = [];
    /** Runs `operation` twice (fresh inputs from `prepare` each time) and counts the second. */
    async function count<P>(name: string, prepare: () => Promise<P>, operation: (input: P, step: (label: string) => void) => Promise<unknown>) {
      const measure = async () => {
        const input = await prepare();
        await settle();
        queries.length = 0;
        const marks: Array<{ step: string; at: number }> = [];
        await operation(input, (label) => marks.push({ step: label, at: queries.length }));
        await settle();
        const sql = [...queries];
        const steps = marks.map((m, i) => ({ step: m.step, statements: (marks[i + 1]?.at ?? sql.length) - m.at }));
        return { sql, steps };
      };
      const first = await measure();
      const { sql, steps } = await measure();
      const work = (list: string[]) => list.filter((q) => !isTransactionControl(q)).length;
      const entry: SqlCount = {
        operation: name,
        statements: sql.length,
        withoutTransactionControl: work(sql),
        first: { statements: first.sql.length, withoutTransactionControl: work(first.sql) },
        summary: sql.map(describeStatement),
        sql: sql.map((q) => q.replace(/\s+/g, ' ').slice(0, 240)),
        ...(steps.length > 1 ? { steps } : {}),
      };
      counts.push(entry);
      log(`  ${name}: ${entry.statements} statements (${entry.withoutTransactionControl} without BEGIN/COMMIT); first time ${entry.first.statements}`);
      return entry;
    }

    const get = (path: string) => async () => {
      const response = await fetch(`${target.issuer}${path}`);
      await response.arrayBuffer();
      if (response.status !== 200) throw new Error(`${path} answered ${response.status}`);
    };
    await count('discovery', async () => undefined, get('/.well-known/oauth-authorization-server'));
    await count('jwks', async () => undefined, get('/jwks'));
    await count('registration', async () => undefined, () => registerClient(target, 'sql count'));

    // The full flow: a new browser and a client the user has not consented to yet.
    await count(
      'flow',
      async () => ({ client: await registerClient(target, 'sql count flow'), browser: new Browser(target) }),
      async ({ client, browser }, step) => {
        const { code, verifier, pages } = await browser.authorize(client, { beforeRequest: step });
        if (pages.join(',') !== 'login,consent') throw new Error(`the flow showed ${pages.join(',') || 'no pages'}`);
        step('token');
        await exchangeCode(target, client, code, verifier);
      },
    );

    // One signed-in browser and a client it has consented to: codes come from one /authorize each.
    const browser = new Browser(target);
    const client = await registerClient(target, 'sql count web');
    const consented = await browser.authorize(client);
    let tokens = await exchangeCode(target, client, consented.code, consented.verifier);
    await count(
      'authorize (live session, remembered consent)',
      async () => undefined,
      async () => {
        const { requests } = await browser.authorize(client);
        if (requests !== 1) throw new Error(`minting a code took ${requests} requests`);
      },
    );
    await count(
      'code exchange',
      () => browser.authorize(client),
      async ({ code, verifier }) => {
        tokens = await exchangeCode(target, client, code, verifier);
      },
    );
    await count(
      'refresh',
      async () => undefined,
      async () => {
        tokens = await refresh(target, client.client_id, tokens.refresh_token);
      },
    );
    return { counts };
  } finally {
    if (server) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server!.close(() => resolve()));
    }
    await handle?.close();
    await database.drop();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { counts } = await countSqlStatements((line) => process.stdout.write(`${line}\n`));
  for (const c of counts) {
    process.stdout.write(`\n${c.operation}: ${c.statements} statements (${c.withoutTransactionControl} without BEGIN/COMMIT)\n`);
    if (c.steps) for (const s of c.steps) process.stdout.write(`    [${s.step}] ${s.statements}\n`);
    for (const line of c.summary) process.stdout.write(`    ${line}\n`);
  }
  process.exit(0);
}
