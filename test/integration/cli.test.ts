/**
 * The real `gatehouse` command, run as a child process the way an operator runs it: exit codes,
 * what it prints, and what it leaves in the database.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, test, vi } from 'vitest';
import { createEmptyPostgresDatabase, queryDatabase } from '../support/database.ts';
import { exitOf, freePort, gatehouse, killAll, start, waitForOutput } from '../support/gatehouse-process.ts';

const PASSWORD = 'correct horse battery staple';

afterEach(killAll);
// Each command is a process start (about 1.5 s here, more on a loaded CI machine), and some tests
// run a dozen in a row.
vi.setConfig({ testTimeout: 120_000 });

describe('with PostgreSQL', () => {
  let database: { url: string; drop: () => Promise<void> };
  let env: Record<string, string>;

  beforeAll(async () => {
    database = await createEmptyPostgresDatabase();
    env = { DATABASE_URL: database.url };
  });
  afterAll(async () => {
    await database?.drop();
  });

  const query = <T extends pg.QueryResultRow>(sql: string, params: unknown[] = []) => queryDatabase<T>(database.url, sql, params);

  async function listResources(): Promise<{ uri: string; name: string; scopes: { name: string; description: string }[]; defaultScopes: string[] }[]> {
    const list = await gatehouse(['resource', 'list', '--json'], { env });
    expect(list.stderr).toBe('');
    expect(list.code).toBe(0);
    return JSON.parse(list.stdout) as never;
  }

  test('migrate applies 0001_initial, then reports the database up to date', async () => {
    const first = await gatehouse(['migrate'], { env });
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/Applied .*0001_initial/);

    const second = await gatehouse(['migrate'], { env });
    expect(second.code).toBe(0);
    expect(second.stdout).toMatch(/up to date/);
    expect(second.stdout).not.toMatch(/Applied/);
  });

  test('user add reads the password from stdin and creates the user', async () => {
    const added = await gatehouse(['user', 'add', 'bob@example.com'], { env, input: `${PASSWORD}\n` });
    expect(added.stderr).toBe('');
    expect(added.code).toBe(0);
    expect(added.stdout).toMatch(/Created user bob@example\.com/);
    expect(added.stdout).not.toContain(PASSWORD);

    const rows = await query<{ email: string; password_hash: string }>('select * from accounts where email = $1', ['bob@example.com']);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.password_hash).toMatch(/^\$argon2id\$/);
  });

  test('audit events a command records stream to GATEHOUSE_AUDIT_SINK too (to stderr when the sink is stdout)', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'gatehouse-sink-'));
    try {
      const file = path.join(dir, 'audit.jsonl');
      const added = await gatehouse(['user', 'add', 'sink@example.com'], { env: { ...env, GATEHOUSE_AUDIT_SINK: file }, input: `${PASSWORD}\n` });
      expect(added.code).toBe(0);
      const lines = (await readFile(file, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      // The event, then the checkpoint that sealed it before the command exited (docs/audit-events.md).
      expect(lines).toEqual([
        expect.objectContaining({ type: 'gatehouse.audit', event: 'user.created', actor: `cli:${userInfo().username}`, details: { email: 'sink@example.com', role: 'user' }, mac: expect.any(String) }),
        expect.objectContaining({ type: 'gatehouse.audit.checkpoint', count: 1, ids: lines[0]!.id, invalid: [] }),
      ]);
      expect(JSON.stringify(lines)).not.toContain(PASSWORD);

      const listed = await gatehouse(['user', 'list', '--json'], { env: { ...env, GATEHOUSE_AUDIT_SINK: 'stdout' } });
      expect(() => JSON.parse(listed.stdout)).not.toThrow();
      const disabled = await gatehouse(['user', 'disable', 'sink@example.com'], { env: { ...env, GATEHOUSE_AUDIT_SINK: 'stdout' } });
      expect(disabled.code).toBe(0);
      expect(disabled.stdout).not.toContain('gatehouse.audit');
      expect(disabled.stderr).toContain('"event":"user.disabled"');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('user add for an existing email fails with exit code 2 and says why', async () => {
    const again = await gatehouse(['user', 'add', 'bob@example.com'], { env, input: `${PASSWORD}\n` });
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/^gatehouse: .*bob@example\.com already exists/);
    expect(again.stderr).not.toMatch(/\n\s+at /); // a message, not a stack trace
    expect(await query('select 1 from accounts where email = $1', ['bob@example.com'])).toHaveLength(1);
  });

  test('user add with a short password fails with exit code 2', async () => {
    const short = await gatehouse(['user', 'add', 'carol@example.com'], { env, input: 'short\n' });
    expect(short.code).toBe(2);
    expect(short.stderr).toMatch(/^gatehouse: .*password must have 8/);
    expect(await query('select 1 from accounts where email = $1', ['carol@example.com'])).toHaveLength(0);

    const none = await gatehouse(['user', 'add', 'carol@example.com'], { env, input: '' });
    expect(none.code).toBe(2);
  });

  test('resource add stores the canonical URI, scopes and default scopes', async () => {
    const added = await gatehouse(
      ['resource', 'add', 'https://MCP.Example.com/', '--name', 'X', '--scope', 'a=Read', '--scope', 'b=Write', '--default-scope', 'a'],
      { env },
    );
    expect(added.stderr).toBe('');
    expect(added.code).toBe(0);
    expect(added.stdout).toContain('https://mcp.example.com');

    expect(await listResources()).toEqual([
      expect.objectContaining({
        uri: 'https://mcp.example.com',
        name: 'X',
        scopes: [
          { name: 'a', description: 'Read' },
          { name: 'b', description: 'Write' },
        ],
        defaultScopes: ['a'],
      }),
    ]);

    // Another spelling of the same URI is the same resource.
    const duplicate = await gatehouse(['resource', 'add', 'https://mcp.example.com:443', '--name', 'Y', '--scope', 'a=Read'], { env });
    expect(duplicate.code).toBe(2);
    expect(duplicate.stderr).toMatch(/^gatehouse: .*https:\/\/mcp\.example\.com is already registered/);
  });

  test('resource add refuses a bad scope spec or a javascript: URI with exit code 2', async () => {
    const badScope = await gatehouse(['resource', 'add', 'https://other.example.com', '--name', 'O', '--scope', 'nodescription'], { env });
    expect(badScope.code).toBe(2);
    expect(badScope.stderr).toMatch(/^gatehouse: .*NAME=DESCRIPTION/);

    const emptyName = await gatehouse(['resource', 'add', 'https://other.example.com', '--name', 'O', '--scope', '=Read'], { env });
    expect(emptyName.code).toBe(2);

    const javascript = await gatehouse(['resource', 'add', 'javascript:alert(1)', '--name', 'J', '--scope', 'a=Read'], { env });
    expect(javascript.code).toBe(2);
    expect(javascript.stderr).toMatch(/^gatehouse: .*http or https/);

    const noName = await gatehouse(['resource', 'add', 'https://other.example.com', '--scope', 'a=Read'], { env });
    expect(noName.code).toBe(2);
    expect(noName.stderr).toMatch(/--name/);

    expect((await listResources()).map((r) => r.uri)).toEqual(['https://mcp.example.com']);
  });

  test('resource remove unregisters it; removing it again fails with exit code 2', async () => {
    const removed = await gatehouse(['resource', 'remove', 'https://MCP.example.com'], { env });
    expect(removed.stderr).toBe('');
    expect(removed.code).toBe(0);
    expect(await listResources()).toEqual([]);

    const again = await gatehouse(['resource', 'remove', 'https://mcp.example.com'], { env });
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/^gatehouse: no resource/);
  });

  test('an invalid configuration makes every command exit 2 naming the setting', async () => {
    const bad = { ...env, PORT: 'abc' };
    const results = await Promise.all([
      gatehouse(['migrate'], { env: bad }),
      gatehouse(['serve'], { env: bad }),
      gatehouse([], { env: bad }),
      gatehouse(['user', 'add', 'dave@example.com'], { env: bad, input: `${PASSWORD}\n` }),
      gatehouse(['resource', 'list'], { env: bad }),
    ]);
    for (const r of results) {
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/^gatehouse: Invalid configuration:/);
      expect(r.stderr).toMatch(/^\s+- PORT: /m);
      expect(r.stdout).toBe('');
    }
    expect(await query('select 1 from accounts where email = $1', ['dave@example.com'])).toHaveLength(0);
  });

  test('client list, show, approve, reject and suspend: the onboarding queue from the command line', async () => {
    await gatehouse(['resource', 'add', 'https://tools.example.com/mcp', '--name', 'Tools', '--scope', 'run=Run tools', '--scope', 'admin=Administer'], { env });
    const metadata = { client_id: 'cli-client-1', client_name: 'Queue Client', redirect_uris: ['http://127.0.0.1/cb'], token_endpoint_auth_method: 'none' };
    await query(`insert into clients (client_id, metadata, source_ip, user_agent) values ($1, $2, '203.0.113.7', 'Agent/1')`, ['cli-client-1', JSON.stringify(metadata)]);
    await query(`insert into clients (client_id, metadata, status) values ('cli-client-2', '{"client_name":"Other"}', 'approved')`);

    const pending = await gatehouse(['client', 'list', '--pending'], { env });
    expect(pending.stderr).toBe('');
    expect(pending.code).toBe(0);
    expect(pending.stdout).toMatch(/^pending\s+\S+\s+cli-client-1\s+Queue Client$/m);
    expect(pending.stdout).not.toContain('cli-client-2');

    const shown = await gatehouse(['client', 'show', 'cli-client-1'], { env });
    expect(shown.stdout).toMatch(/arrived: .* by dynamic registration from 203\.0\.113\.7 \(Agent\/1\)/);
    expect(shown.stdout).toMatch(/ceiling:\s+nothing/);

    const approved = await gatehouse(['client', 'approve', 'cli-client-1', '--resource', 'https://TOOLS.example.com/mcp', '--scopes', 'run'], { env });
    expect(approved.stderr).toBe('');
    expect(approved.code).toBe(0);
    expect(approved.stdout).toMatch(/status:\s+approved by cli:/);
    const [row] = await query<{ status: string; ceiling: unknown }>(`select status, ceiling from clients where client_id = 'cli-client-1'`);
    expect(row).toEqual({ status: 'approved', ceiling: { 'https://tools.example.com/mcp': ['run'] } });

    for (const args of [
      ['client', 'approve', 'cli-client-1', '--resource', 'https://tools.example.com/mcp', '--scopes', 'delete'],
      ['client', 'approve', 'cli-client-1', '--resource', 'https://unknown.example.com'],
      ['client', 'approve', 'no-such-client', '--resource', 'https://tools.example.com/mcp', '--scopes', 'run'],
      ['client', 'suspend', 'no-such-client'],
      ['client', 'list', '--status', 'sleeping'],
    ]) {
      const refused = await gatehouse(args, { env });
      expect(refused.code, args.join(' ')).toBe(2);
      expect(refused.stderr).toMatch(/^gatehouse: /);
    }
    expect((await query<{ ceiling: unknown }>(`select ceiling from clients where client_id = 'cli-client-1'`))[0]!.ceiling).toEqual({ 'https://tools.example.com/mcp': ['run'] });

    const suspended = await gatehouse(['client', 'suspend', 'cli-client-1', '--reason', 'lost laptop'], { env });
    expect(suspended.code).toBe(0);
    expect(suspended.stdout).toMatch(/status:\s+suspended \(lost laptop\)/);
    const rejected = await gatehouse(['client', 'reject', 'cli-client-2', '--json'], { env });
    expect(JSON.parse(rejected.stdout)).toMatchObject({ clientId: 'cli-client-2', status: 'rejected' });
  });

  test('a client id that begins with "-" (1 in 64 of oidc-provider\'s) is an id, not an unknown option', async () => {
    const id = '-Xq3vWnYt_k9ZrPb2LmHsA4cDe7FgJ1uV0oNiKxR8yT';
    await query(`insert into clients (client_id, metadata) values ($1, '{"client_name":"Dash Client"}')`, [id]);
    const shown = await gatehouse(['client', 'show', id], { env });
    expect(shown.stderr).toBe('');
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain(id);
    const approved = await gatehouse(['client', 'approve', id, '--resource', 'https://tools.example.com/mcp', '--scopes', 'run'], { env });
    expect(approved.stderr).toBe('');
    expect(approved.code).toBe(0);
    expect((await query<{ status: string }>(`select status from clients where client_id = $1`, [id]))[0]!.status).toBe('approved');
    // An option where the id belongs is still an option: the usage error, not a client named "--json".
    const missing = await gatehouse(['client', 'show', '--json'], { env });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/usage: gatehouse client/);
    // And a grant id too.
    const revoked = await gatehouse(['connection', 'revoke', '-no-such-grant'], { env });
    expect(revoked.code).toBe(2);
    expect(revoked.stderr).toMatch(/no connection -no-such-grant/);
  });

  test('admin create makes an administrator; a second one with the same email is refused', async () => {
    const created = await gatehouse(['admin', 'create', 'boss@example.com'], { env, input: `${PASSWORD}\n` });
    expect(created.stderr).toBe('');
    expect(created.code).toBe(0);
    expect(created.stdout).toMatch(/Created administrator boss@example\.com\. Sign in at http:\/\/localhost:4001\/sign-in/);
    expect(await query(`select role from accounts where email = 'boss@example.com'`)).toEqual([{ role: 'admin' }]);
    const again = await gatehouse(['admin', 'create', 'BOSS@example.com'], { env, input: `${PASSWORD}\n` });
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/already exists/);
  });

  test('resource edit, user list, disable and enable, connection list and revoke: the console\'s other actions, audited', async () => {
    // bob (from `user add` above) has a connection to cli-client-3 on the Tools server, with a refresh token and a sign-in session.
    const [bob] = await query<{ id: string }>(`select id from accounts where email = 'bob@example.com'`);
    await query(`insert into clients (client_id, metadata, status) values ('cli-client-3', '{"client_name":"Connected"}', 'approved')`);
    const grant = { accountId: bob!.id, clientId: 'cli-client-3', resources: { 'https://tools.example.com/mcp': 'run admin' } };
    await query(
      `insert into oidc_payloads (model, id, payload, account_id, client_id, grant_id, expires_at) values
        ('Grant', 'cli-grant-1', $1, $2, 'cli-client-3', null, now() + interval '1 day'),
        ('RefreshToken', 'cli-refresh-1', '{}', $2, 'cli-client-3', 'cli-grant-1', now() + interval '1 day'),
        ('Session', 'cli-session-1', '{}', $2, null, null, now() + interval '1 day')`,
      [JSON.stringify(grant), bob!.id],
    );

    // Independent of one another, so they run side by side.
    const [edited, users, connections] = await Promise.all([
      gatehouse(['resource', 'edit', 'https://TOOLS.example.com/mcp', '--name', 'Tools v2', '--scope', 'run=Run every tool', '--scope', 'list=List tools', '--access-token-ttl', '5m'], { env }),
      gatehouse(['user', 'list', '--json'], { env }),
      gatehouse(['connection', 'list', '--client', 'cli-client-3', '--user', 'BOB@example.com'], { env }),
    ]);
    expect(edited.stderr).toBe('');
    expect(edited.code).toBe(0);
    expect(edited.stdout).toContain('Updated https://tools.example.com/mcp (Tools v2)');
    const [tools] = await query<{ name: string; scopes: unknown; default_scopes: unknown; access_token_ttl: number }>(
      `select name, scopes, default_scopes, access_token_ttl from resources where uri = 'https://tools.example.com/mcp'`,
    );
    // The given scopes replace the list; "run" was a default and still is; "admin" is gone.
    expect(tools).toEqual({ name: 'Tools v2', scopes: [{ name: 'run', description: 'Run every tool' }, { name: 'list', description: 'List tools' }], default_scopes: ['run'], access_token_ttl: 300 });

    expect(users.code).toBe(0);
    const listed = JSON.parse(users.stdout) as Array<Record<string, unknown>>;
    expect(listed.map((u) => [u.email, u.role, u.disabledAt])).toEqual(expect.arrayContaining([['bob@example.com', 'user', null], ['boss@example.com', 'admin', null]]));
    expect(users.stdout).not.toMatch(/argon2|password/i);

    expect(connections.stderr).toBe('');
    expect(connections.code).toBe(0);
    expect(connections.stdout).toMatch(/^cli-grant-1\n\s+user:\s+bob@example\.com\n\s+client:\s+Connected \(cli-client-3\)\n\s+resource:\s+https:\/\/tools\.example\.com\/mcp: run admin$/m);

    // Known input errors: exit 2 with a message, and nothing changes.
    const before = JSON.stringify(await query(`select * from resources order by uri`)) + JSON.stringify(await query(`select id, disabled_at from accounts order by email`));
    const refused = await Promise.all(
      [
        ['resource', 'edit', 'https://tools.example.com/mcp', '--scope', 'openid=Sign in', '--default-scope', 'admin'],
        ['resource', 'edit', 'https://unknown.example.com', '--name', 'U'],
        ['user', 'disable', 'nobody@example.com'],
        ['connection', 'revoke', 'no-such-grant'],
        ['connection', 'list', '--frobnicate'],
      ].map((args) => gatehouse(args, { env }).then((r) => ({ args, ...r }))),
    );
    for (const r of refused) {
      expect(r.code, r.args.join(' ')).toBe(2);
      expect(r.stderr, r.args.join(' ')).toMatch(/^gatehouse: \S/);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    expect(refused.map((r) => r.stderr.split('\n')[0])).toEqual([
      expect.stringMatching(/scope "openid" is reserved.*default scope "admin" is not one of/),
      expect.stringContaining('no resource https://unknown.example.com is registered'),
      'gatehouse: no account for nobody@example.com',
      expect.stringContaining('no connection no-such-grant'),
      expect.stringContaining('--frobnicate'),
    ]);
    expect(JSON.stringify(await query(`select * from resources order by uri`)) + JSON.stringify(await query(`select id, disabled_at from accounts order by email`))).toBe(before);

    const disabled = await gatehouse(['user', 'disable', 'bob@example.com'], { env });
    expect(disabled.stderr).toBe('');
    expect(disabled.code).toBe(0);
    expect(disabled.stdout).toMatch(/^Disabled bob@example\.com: .*\(1 sign-in sessions ended\)/);
    expect((await query(`select disabled_at from accounts where email = 'bob@example.com'`))[0]!.disabled_at).not.toBeNull();
    expect(await query(`select id from oidc_payloads where id = 'cli-session-1'`)).toEqual([]);

    const [enabled, revoked] = await Promise.all([gatehouse(['user', 'enable', 'bob@example.com'], { env }), gatehouse(['connection', 'revoke', 'cli-grant-1'], { env })]);
    expect(enabled.code).toBe(0);
    expect(enabled.stdout).toMatch(/^Enabled bob@example\.com/);
    expect((await query(`select disabled_at from accounts where email = 'bob@example.com'`))[0]!.disabled_at).toBeNull();
    expect(revoked.stderr).toBe('');
    expect(revoked.code).toBe(0);
    expect(revoked.stdout).toMatch(/^Revoked the connection of bob@example\.com to Connected/);
    expect(await query(`select id from oidc_payloads where id in ('cli-grant-1', 'cli-refresh-1')`)).toEqual([]);

    // Each change is in the audit trail, by the OS user who ran the command.
    const events = await query<{ event: string; actor: string; account_id: string | null; resource: string | null; details: Record<string, unknown> }>(
      `select event, actor, account_id, resource, details from audit_events where event in ('resource.updated', 'user.disabled', 'user.enabled', 'grant.revoked') and coalesce(details->>'email', '') <> 'sink@example.com' order by id`,
    );
    expect(events.map((e) => e.event).sort()).toEqual(['grant.revoked', 'resource.updated', 'user.disabled', 'user.enabled']);
    for (const e of events) expect(e.actor).toBe(`cli:${userInfo().username}`);
    const byEvent = Object.fromEntries(events.map((e) => [e.event, e]));
    expect(byEvent['resource.updated']).toMatchObject({
      resource: 'https://tools.example.com/mcp',
      details: { name: 'Tools v2', added_scopes: ['list'], removed_scopes: ['admin'], access_token_ttl: 300, previous: { name: 'Tools', access_token_ttl: 600 } },
    });
    expect(byEvent['user.disabled']).toMatchObject({ account_id: bob!.id, details: { email: 'bob@example.com', ended_sessions: 1 } });
    expect(byEvent['grant.revoked']).toMatchObject({ account_id: bob!.id, details: { grant_id: 'cli-grant-1', revoked_rows: 2 } });
  });

  test('resource add and edit with --scope-includes: declared, listed, kept when --scope names the scope again, refused with exit 2', async () => {
    const uri = 'https://notes.example.com/mcp';
    const scopesIn = async () => (await query<{ scopes: unknown }>(`select scopes from resources where uri = $1`, [uri]))[0]?.scopes;
    const added = await gatehouse(
      ['resource', 'add', 'https://NOTES.example.com/mcp', '--name', 'Notes', '--scope', 'notes:read=Read', '--scope', 'notes:write=Write', '--scope', 'notes:admin=Administer', '--scope-includes', 'notes:admin=notes:read,notes:write'],
      { env },
    );
    expect(added.stderr).toBe('');
    expect(added.code).toBe(0);
    expect(added.stdout).toContain('notes:admin (includes notes:read, notes:write)');
    const [listed, text] = await Promise.all([listResources(), gatehouse(['resource', 'list'], { env })]);
    expect(listed.find((r) => r.uri === uri)!.scopes).toEqual([
      { name: 'notes:read', description: 'Read' },
      { name: 'notes:write', description: 'Write' },
      { name: 'notes:admin', description: 'Administer', includes: ['notes:read', 'notes:write'] },
    ]);
    expect(text.stdout).toMatch(/^ {4}. notes:admin: Administer \(includes notes:read, notes:write\)$/m);

    // Without --scope it changes the existing scopes' includes (BROAD= for none); a scope given again with --scope keeps its includes.
    const narrowed = await gatehouse(['resource', 'edit', uri, '--scope-includes', 'notes:write=notes:read', '--scope-includes', 'notes:admin=notes:write'], { env });
    expect(narrowed.stderr).toBe('');
    expect(narrowed.code).toBe(0);
    const described = await gatehouse(['resource', 'edit', uri, '--scope', 'notes:read=Read all', '--scope', 'notes:write=Write', '--scope', 'notes:admin=Administer', '--scope-includes', 'notes:write='], { env });
    expect(described.stderr).toBe('');
    expect(described.code).toBe(0);
    const expected = [
      { name: 'notes:read', description: 'Read all' },
      { name: 'notes:write', description: 'Write' },
      { name: 'notes:admin', description: 'Administer', includes: ['notes:write'] },
    ];
    expect(await scopesIn()).toEqual(expected);

    const refused = await Promise.all(
      [
        ['resource', 'edit', uri, '--scope', 'notes:read=Read', '--scope', 'notes:admin=Administer'],
        ['resource', 'edit', uri, '--scope-includes', 'notes:admin=notes:delete'],
        ['resource', 'edit', uri, '--scope-includes', 'notes:admin'],
        ['resource', 'edit', uri, '--scope-includes', 'notes:delete=notes:read'],
        ['resource', 'add', 'https://other.example.com', '--name', 'O', '--scope', 'a=A', '--scope-includes', 'a=a'],
      ].map((args) => gatehouse(args, { env }).then((r) => ({ args, ...r }))),
    );
    for (const r of refused) {
      expect(r.code, r.args.join(' ')).toBe(2);
      expect(r.stderr, r.args.join(' ')).toMatch(/^gatehouse: [^\n]+\n$/); // one line, no stack trace
    }
    expect(refused.map((r) => r.stderr.trim())).toEqual([
      'gatehouse: scope "notes:write" cannot be removed while scope "notes:admin" includes it: remove it from notes:admin\'s includes as well',
      'gatehouse: scope "notes:admin" includes "notes:delete", which is not one of the resource\'s scopes',
      'gatehouse: --scope-includes "notes:admin" must be BROAD=NARROW[,NARROW…]',
      'gatehouse: --scope-includes "notes:delete=…": "notes:delete" is not one of the MCP server\'s scopes',
      'gatehouse: scope "a" includes itself',
    ]);
    expect(await scopesIn()).toEqual(expected);
    expect(await query(`select 1 from resources where uri = 'https://other.example.com'`)).toEqual([]);
  });

  test('audit verify: 0 while the trail is intact (every command sealed its events), 3 naming the row once one was edited', async () => {
    const intact = await gatehouse(['audit', 'verify'], { env });
    expect(intact.stderr).toBe('');
    expect(intact.code).toBe(0);
    expect(intact.stdout).toMatch(/^The audit trail is intact: (\d+) events, \1 sealed in \d+ checkpoints \(head: checkpoint \d+, [0-9a-f]{64}, signed by key [0-9a-f]{16}\), 0 waiting/);
    // Nothing left to seal: `audit seal` says so.
    const sealed = await gatehouse(['audit', 'seal'], { env });
    expect(sealed.code, sealed.stderr).toBe(0);
    expect(sealed.stdout).toBe('Nothing to seal: every committed audit event is in a checkpoint.\n');
    const [row] = await query<{ id: string }>('select id::text from audit_events order by id limit 1');
    await query('alter table audit_events disable trigger audit_events_no_update_or_delete');
    await query(`update audit_events set details = '{"forged": true}' where id = $1`, [row!.id]);
    await query('alter table audit_events enable trigger audit_events_no_update_or_delete');
    const broken = await gatehouse(['audit', 'verify'], { env });
    expect(broken.code).toBe(3);
    expect(broken.stderr).toMatch(/^gatehouse: the audit trail was tampered with/);
    expect(broken.stderr).toContain(`event ${row!.id}: it was edited after checkpoint 1 sealed it`);
    expect((await gatehouse(['audit', 'verify', '--checkpoints'], { env })).code).toBe(2);
    expect((await gatehouse(['audit', 'verify', '--checkpoints', '/nonexistent/file.jsonl'], { env })).stderr).toMatch(/^gatehouse: --checkpoints \/nonexistent\/file\.jsonl: ENOENT/);
  });

  test('keys rotate schedules a new signing key; keys list shows states and no private material', async () => {
    // A signing key exists once a server has started; keys rotate creates one first if needed.
    const rotated = await gatehouse(['keys', 'rotate', '--lead', '0'], { env });
    expect(rotated.stderr).toBe('');
    expect(rotated.code).toBe(0);
    expect(rotated.stdout).toMatch(/^New signing key \S+ is published now and signs from .*; the previous key stays published until /);
    const listed = await gatehouse(['keys', 'list', '--json'], { env });
    expect(listed.code).toBe(0);
    const keys = JSON.parse(listed.stdout) as Array<{ state: string; kid: string }>;
    expect(keys.map((k) => k.state)).toEqual(['active', 'retired']);
    expect(listed.stdout).not.toMatch(/"d"|private/);
    expect((await gatehouse(['keys', 'rotate', '--lead', 'soon'], { env })).code).toBe(2);
  });

  test('an unknown command exits 2 with the usage', async () => {
    const r = await gatehouse(['frobnicate'], { env });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown command "frobnicate"/);
    expect(r.stderr).toMatch(/Usage: gatehouse/);
  });
});

describe('with the embedded database', () => {
  let dataDir: string;

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'gatehouse-cli-'));
  });
  afterAll(async () => {
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  test('serve runs on the embedded database, locks it against a second process, and stops cleanly on SIGTERM', { timeout: 120_000 }, async () => {
    const port = await freePort();
    const adminPort = await freePort();
    const env = { GATEHOUSE_DATA_DIR: dataDir, PORT: String(port), GATEHOUSE_ADMIN_PORT: String(adminPort) };
    const server = start(['serve'], env);
    server.stdin!.end();
    try {
      const banner = await waitForOutput(server, 'Gatehouse is running', 90_000);
      expect(banner).toContain(`Issuer:     http://localhost:${port}`);
      expect(banner).toContain('embedded');

      const response = await fetch(`http://127.0.0.1:${port}/.well-known/oauth-authorization-server`, {
        signal: AbortSignal.timeout(10_000),
      });
      expect(response.status).toBe(200);
      const metadata = (await response.json()) as { issuer: string };
      expect(metadata.issuer).toBe(`http://localhost:${port}`);
      // The admin console answers on its own port, and only there.
      expect(banner).toContain(`Admin:      http://localhost:${adminPort}`);
      const console = await fetch(`http://127.0.0.1:${adminPort}/pending`, { redirect: 'manual', signal: AbortSignal.timeout(10_000) });
      expect(console.status).toBe(303);
      expect(console.headers.get('location')).toBe('/sign-in');
      expect((await fetch(`http://127.0.0.1:${port}/sign-in`, { signal: AbortSignal.timeout(10_000) })).status).toBe(404);

      const second = await gatehouse(['user', 'add', 'erin@example.com'], { env, input: `${PASSWORD}\n` });
      expect(second.code).toBe(2);
      expect(second.stderr).toMatch(/^gatehouse: the embedded database in .* is in use by another Gatehouse process \(pid \d+\)/);

      const exited = exitOf(server, 30_000);
      server.kill('SIGTERM');
      expect(await exited).toEqual({ code: 0, signal: null });
    } finally {
      if (server.exitCode === null && server.signalCode === null) server.kill('SIGKILL');
    }

    // The lock went with the server: the data folder is usable again.
    const after = await gatehouse(['user', 'add', 'erin@example.com'], { env, input: `${PASSWORD}\n`, timeoutMs: 60_000 });
    expect(after.stderr).toBe('');
    expect(after.code).toBe(0);
    expect(after.stdout).toMatch(/Created user erin@example\.com/);
  });
});
