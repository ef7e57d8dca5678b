/**
 * Round trips per token request, counted from the query log: deterministic, unlike timings. A
 * regression that adds a query to the hot path fails here. (Issue 6 will lower these.)
 * 2 (issue 6 asks for at most 6): one read-ahead statement (the per-client rate-limit counter, the
 * client, the code or refresh token, its grant, its account and the registry:
 * oidc/token-prefetch.ts), then one write statement carrying the consumption, the rotated refresh
 * token and the audit row (`token.refreshed` / `token.issued`) as data-modifying CTEs, atomic
 * without BEGIN/COMMIT (db/unit-of-work.ts), led by the grant's lock and ended by the commit deadline
 * (issue 14: lock order, no late commits — neither costs a round trip). It was 11 before either. The client's approval status and ceiling cost nothing: they come with
 * the client row.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { seed, startTestApp, type TestApp } from '../support/app.ts';
import { authorizeForCode, exchangeCode, obtainTokens, registerClient, tokenRequest } from '../support/oauth.ts';

let app: TestApp;
beforeAll(async () => {
  app = await startTestApp();
  await seed(app);
});
afterAll(() => app?.close());

/** Statements sent, excluding transaction control. */
function counted(queries: string[]) {
  const all = queries.length;
  const work = queries.filter((q) => !/^(begin|commit|rollback)/i.test(q.trim())).length;
  return { all, work };
}

/**
 * The write statement, in lock order (docs/security.md "Lock order"): the grant's row first (FOR
 * KEY SHARE, gated: a concurrent revocation wins), then the consumption (gated), the new refresh
 * token and the audit row; last, the commit deadline (no late commits, src/db/database.ts).
 */
function expectWriteStatement(writes: string) {
  expect(writes).toMatch(/^\/\* prepare \*\/ WITH w0 AS \(SELECT id FROM oidc_payloads WHERE model = 'Grant' AND id = ANY\(\$1::text\[\]\) ORDER BY id FOR KEY SHARE\), w1 AS \(update "oidc_payloads" set "consumed_at" = now\(\)/);
  expect(writes).toMatch(/insert into "oidc_payloads"/);
  expect(writes).toMatch(/SELECT gatehouse_assert\(EXISTS \(SELECT 1 FROM w0\), \$\d+\) AS g0, gatehouse_assert\(EXISTS \(SELECT 1 FROM w1\)/);
  // The embedded database is in-process: nothing to be late for, no deadline.
  if (app.database.kind === 'postgres') expect(writes).toMatch(/, gatehouse_commit_by\(to_timestamp\(\$\d+::float8\), \(SELECT count\(\*\) FROM w0\) \+ .*\) AS in_time$/);
  else expect(writes).not.toMatch(/gatehouse_commit_by/);
}

test('one refresh with rotation', async () => {
  const { client, tokens } = await obtainTokens(app.issuer);
  app.database.queries.length = 0;
  const r = await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: tokens.body.refresh_token, client_id: client.client_id });
  expect(r.status).toBe(200);
  const n = counted(app.database.queries);
  console.log(`refresh: ${n.all} statements (${n.work} excluding BEGIN/COMMIT):\n  ${app.database.queries.join('\n  ')}`);
  expect(n.all).toBe(2);
  expect(app.database.queries.filter((q) => /insert into "audit_events"/i.test(q))).toHaveLength(1);
  expect(app.database.queries.filter((q) => /insert into "?rate_limit_counters"?/i.test(q))).toHaveLength(1);
  expect(app.database.queries.filter((q) => /^\s*(begin|commit)/i.test(q))).toHaveLength(0);
  expectWriteStatement(app.database.queries[1]!);
});

test('one authorization code exchange', async () => {
  const client = await registerClient(app.issuer);
  const { code, verifier } = await authorizeForCode(app.issuer, client, { resource: 'https://mcp.example.com' });
  app.database.queries.length = 0;
  const r = await exchangeCode(app.issuer, client, code, verifier, 'https://mcp.example.com');
  expect(r.status).toBe(200);
  const n = counted(app.database.queries);
  console.log(`code exchange: ${n.all} statements (${n.work} excluding BEGIN/COMMIT):\n  ${app.database.queries.join('\n  ')}`);
  expect(n.all).toBe(2);
  expect(app.database.queries.filter((q) => /insert into "audit_events"/i.test(q))).toHaveLength(1);
  expect(app.database.queries.filter((q) => /insert into "?rate_limit_counters"?/i.test(q))).toHaveLength(1);
  expect(app.database.queries.filter((q) => /^\s*(begin|commit)/i.test(q))).toHaveLength(0);
  expectWriteStatement(app.database.queries[1]!);
});
