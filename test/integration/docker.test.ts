/**
 * The container files, checked without Docker: what someone running `docker compose up` relies on.
 * docker-compose.yml is parsed as YAML (its inline Caddyfile as Caddyfile blocks), the Dockerfile as
 * text, the compose environment is fed to the real config loader, and both healthcheck commands are
 * run against a local HTTP server — so a setting renamed in src/config/config.ts, a port changed on
 * one side only or a broken probe breaks this test rather than a deployment.
 *
 * The stack: postgres (healthy) → migrate (one-shot) → gatehouse-1, gatehouse-2 (one configuration)
 * ← caddy (TLS; load-balances the public listener, and serves the admin listener on loopback only).
 * postgres's init script creates the roles: `migrate` connects as the schema's owner, the instances
 * as a login in `gatehouse_runtime` (migration 0009), which cannot change the audit trail.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { parse } from 'yaml';
import { loadConfig, settings } from '../../src/config/config.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const read = (file: string) => readFileSync(path.join(ROOT, file), 'utf8');

// ---------------------------------------------------------------------------------------------
// docker-compose.yml

type Port = string | number | { target?: number | string; published?: number | string; host_ip?: string; protocol?: string };

interface ComposeService {
  image?: string;
  build?: string | { context?: string; dockerfile?: string };
  command?: string[] | string;
  environment?: Record<string, string | number | boolean | null> | string[];
  depends_on?: Record<string, { condition?: string }> | string[];
  ports?: Port[];
  healthcheck?: { test?: string[] | string; disable?: boolean };
  restart?: string;
  stop_grace_period?: string;
  volumes?: (string | { type?: string; source?: string; target?: string })[];
  configs?: (string | { source?: string; target?: string })[];
}

interface ComposeFile {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
  configs?: Record<string, { content?: string; file?: string }>;
}

// `merge: true`: the two instances are `<<: *gatehouse-instance` (YAML merge keys, which Compose supports).
const compose = parse(read('docker-compose.yml'), { merge: true }) as ComposeFile;

function service(name: string): ComposeService {
  const s = compose.services[name];
  if (!s) throw new Error(`docker-compose.yml has no service "${name}"`);
  return s;
}

/** The Gatehouse server instances: gatehouse-1, gatehouse-2, … */
const INSTANCES = Object.keys(compose.services).filter((name) => /^gatehouse-\d+$/.test(name));

/** A service's environment as a map of raw (uninterpolated) strings, whichever syntax it uses. */
function environmentOf(s: ComposeService): Record<string, string> {
  const env = s.environment ?? {};
  if (Array.isArray(env)) {
    return Object.fromEntries(
      env.map((line) => {
        const i = line.indexOf('=');
        return i < 0 ? [line, ''] : [line.slice(0, i), line.slice(i + 1)];
      }),
    );
  }
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v === null ? '' : String(v)]));
}

/**
 * Compose's variable interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message},
 * ${VAR?message}, with `vars` standing for the shell environment (and .env) of `docker compose up`.
 */
function interpolate(value: string, vars: Record<string, string>): string {
  return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?])([^}]*))?\}/g, (_m, name: string, colon: string, op: string, arg: string) => {
    const v = vars[name];
    const missing = v === undefined || (colon === ':' && v === '');
    if (!missing) return v;
    if (op === '-') return arg;
    if (op === '?') throw new Error(`required variable ${name} is missing a value: ${arg}`);
    return '';
  });
}

function interpolateAll(env: Record<string, string>, vars: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, interpolate(v, vars)]));
}

function dependsOn(s: ComposeService, on: string): string | undefined {
  const d = s.depends_on;
  if (!d) return undefined;
  if (Array.isArray(d)) return d.includes(on) ? 'service_started' : undefined;
  const entry = d[on];
  return entry ? (entry.condition ?? 'service_started') : undefined;
}

function commandOf(s: ComposeService): string[] {
  return typeof s.command === 'string' ? s.command.split(/\s+/).filter(Boolean) : (s.command ?? []);
}

/** Port mappings: short syntax "[IP:][HOST:]CONTAINER[/proto]" or long syntax. `ip` is '' when unbound (all interfaces). */
function portsOf(s: ComposeService): { ip: string; published: string; target: string }[] {
  return (s.ports ?? []).map((p) => {
    if (typeof p === 'object') return { ip: p.host_ip ?? '', published: String(p.published ?? ''), target: String(p.target ?? '') };
    const parts = String(p).replace(/\/(tcp|udp)$/, '').split(':');
    const target = parts.at(-1) ?? '';
    const published = parts.length > 1 ? (parts.at(-2) ?? '') : '';
    const ip = parts.length > 2 ? parts.slice(0, -2).join(':').replace(/^\[|\]$/g, '') : '';
    return { ip, published, target };
  });
}

const isLoopback = (ip: string) => ip === '127.0.0.1' || ip === '::1' || ip === 'localhost';

/** Seconds of a Compose duration ("15s", "1m30s", "500ms"). */
function composeSeconds(value: string): number {
  const parts = [...value.matchAll(/(\d+(?:\.\d+)?)(h|m|s|ms|us)/g)];
  if (!parts.length || parts.map((p) => p[0]).join('') !== value) throw new Error(`not a Compose duration: ${value}`);
  const unit = { h: 3600, m: 60, s: 1, ms: 0.001, us: 0.000001 } as const;
  return parts.reduce((sum, p) => sum + Number(p[1]) * unit[p[2] as keyof typeof unit], 0);
}

/** The argv of a healthcheck's `test` (["CMD", …] or ["CMD-SHELL", "…"]). */
function healthcheckArgv(s: ComposeService): string[] {
  const t = s.healthcheck?.test;
  if (!t) return [];
  if (typeof t === 'string') return ['sh', '-c', t];
  if (t[0] === 'CMD') return t.slice(1);
  if (t[0] === 'CMD-SHELL') return ['sh', '-c', t.slice(1).join(' ')];
  return [];
}

// ---------------------------------------------------------------------------------------------
// The inline Caddyfile

interface CaddyNode {
  tokens: string[];
  children?: CaddyNode[];
}

/** Caddyfile lines into nested blocks (enough for the directives this file uses: no quoting, no snippets). */
function parseCaddyfile(text: string): CaddyNode[] {
  const root: CaddyNode[] = [];
  const stack: CaddyNode[][] = [root];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/(^|\s)#.*$/, '').trim();
    if (!line) continue;
    if (line === '}') {
      if (stack.length < 2) throw new Error('unbalanced } in the Caddyfile');
      stack.pop();
      continue;
    }
    const opens = line.endsWith('{');
    const tokens = (opens ? line.slice(0, -1) : line).trim().split(/\s+/).filter(Boolean);
    const node: CaddyNode = opens ? { tokens, children: [] } : { tokens };
    stack.at(-1)!.push(node);
    if (opens) stack.push(node.children!);
  }
  if (stack.length !== 1) throw new Error('unclosed { in the Caddyfile');
  return root;
}

const directive = (nodes: CaddyNode[] | undefined, name: string) => (nodes ?? []).filter((n) => n.tokens[0] === name);
const value = (nodes: CaddyNode[] | undefined, name: string) => directive(nodes, name)[0]?.tokens.slice(1).join(' ');

function caddyfileText(): string {
  const proxy = service('caddy');
  const mount = (proxy.configs ?? []).find((c) => typeof c === 'object' && c.target === '/etc/caddy/Caddyfile');
  if (!mount || typeof mount !== 'object' || !mount.source) throw new Error('caddy mounts no config at /etc/caddy/Caddyfile');
  const content = compose.configs?.[mount.source]?.content;
  if (content === undefined) throw new Error(`configs.${mount.source} has no inline content`);
  return content;
}

/** The Caddyfile as Caddy would read it, after Compose's interpolation with `vars`. */
const caddySites = (vars: Record<string, string>) => parseCaddyfile(interpolate(caddyfileText(), vars)).filter((n) => n.children && n.tokens.length);

/** Every site address Caddy serves → its block. A global options block (no address) is skipped. */
function site(vars: Record<string, string>, address: string): CaddyNode {
  const found = caddySites(vars).find((n) => n.tokens.some((t) => t.replace(/,$/, '') === address));
  if (!found) throw new Error(`the Caddyfile serves no site ${address} (sites: ${caddySites(vars).map((n) => n.tokens.join(' ')).join('; ')})`);
  return found;
}

// ---------------------------------------------------------------------------------------------
// The postgres init script (an inline config, like the Caddyfile)

/** What the init script creates, read from its SQL (with the `$$` Compose escapes undone). */
function initRoles() {
  const mount = (service('postgres').configs ?? []).find((c) => typeof c === 'object' && c.target?.startsWith('/docker-entrypoint-initdb.d/'));
  if (!mount || typeof mount !== 'object' || !mount.source) throw new Error('postgres mounts no init script');
  const script = compose.configs?.[mount.source]?.content;
  if (script === undefined) throw new Error(`configs.${mount.source} has no inline content`);
  // Compose turns `$$` into `$`; a lone `$` would be interpolated by Compose instead of the shell.
  expect(script.replace(/\$\$/g, ''), 'every $ for the shell is written $$').not.toMatch(/\$/);
  const shell = script.replace(/\$\$/g, '$');
  const variables = new Map([...shell.matchAll(/--set (\w+)="\$(\w+)"/g)].map((m) => [m[1]!, m[2]!]));
  const role = (name: string) => {
    const m = new RegExp(`CREATE ROLE ${name} ([^;]*);`).exec(shell);
    if (!m) throw new Error(`the init script does not create ${name}`);
    const password = /PASSWORD :'(\w+)'/.exec(m[1]!)?.[1];
    return { name, attributes: m[1]!, passwordVariable: variables.get(password ?? '') ?? '', inRuntime: /\bIN ROLE gatehouse_runtime\b/.test(m[1]!) };
  };
  const db = /CREATE DATABASE (\w+) OWNER (\w+);/.exec(shell);
  if (!db) throw new Error('the init script creates no database');
  const appName = /CREATE ROLE (\w+) LOGIN [^;]*IN ROLE gatehouse_runtime/.exec(shell)?.[1];
  if (!appName) throw new Error('the init script creates no login in gatehouse_runtime');
  return {
    database: db[1]!,
    databaseOwner: db[2]!,
    owner: role(db[2]!),
    app: role(appName),
    runtimeNoLogin: /CREATE ROLE gatehouse_runtime NOLOGIN;/.test(shell),
  };
}

// ---------------------------------------------------------------------------------------------
// Dockerfile

interface Instruction {
  keyword: string;
  args: string;
}

/** Instructions of a Dockerfile, with comments dropped and `\` line continuations joined. */
function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let pending = '';
  for (const rawLine of text.split(/\r?\n/)) {
    const line = rawLine.trim();
    if (!pending && (line === '' || line.startsWith('#'))) continue;
    if (pending && line.startsWith('#')) continue; // comments inside a continued instruction
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `;
      continue;
    }
    const full = (pending + line).trim();
    pending = '';
    if (!full) continue;
    const m = /^(\S+)\s*(.*)$/.exec(full);
    if (m) out.push({ keyword: m[1]!.toUpperCase(), args: m[2]! });
  }
  if (pending.trim()) {
    const m = /^(\S+)\s*(.*)$/.exec(pending.trim());
    if (m) out.push({ keyword: m[1]!.toUpperCase(), args: m[2]! });
  }
  return out;
}

/** Arguments of an exec-form (`["a", "b"]`) or shell-form instruction, with leading `--flag=…` options removed. */
function argList(args: string): string[] {
  const trimmed = args.replace(/^(--[a-z-]+(=\S+)?\s+)+/, '').trim();
  if (trimmed.startsWith('[')) return JSON.parse(trimmed) as string[];
  return trimmed.split(/\s+/).filter(Boolean);
}

/** `ENV A=1 B="x y"` and the legacy `ENV A 1` form. */
function parseEnv(args: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(args)) {
    const m = /^(\S+)\s+(.*)$/.exec(args);
    if (m) out[m[1]!] = m[2]!;
    return out;
  }
  for (const m of args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|'[^']*'|\S*)/g)) {
    const raw = m[2]!;
    out[m[1]!] = /^["']/.test(raw) ? raw.slice(1, -1) : raw;
  }
  return out;
}

const dockerfileText = read('Dockerfile');
const instructions = parseDockerfile(dockerfileText);
const all = (keyword: string) => instructions.filter((i) => i.keyword === keyword);
const last = (keyword: string) => all(keyword).at(-1);
const dockerfileEnv: Record<string, string> = Object.assign({}, ...all('ENV').map((i) => parseEnv(i.args)));

/** Whether `source` (relative to the build context, globs allowed in the last segment) matches something in the repo. */
function contextPathExists(source: string): boolean {
  const clean = source.replace(/^\.\//, '').replace(/\/+$/, '') || '.';
  if (!/[*?[]/.test(clean)) return existsSync(path.join(ROOT, clean));
  const dir = path.dirname(clean);
  const pattern = new RegExp(
    `^${path
      .basename(clean)
      .replace(/[.+^${}()|\\]/g, '\\$&')
      .replace(/\*/g, '[^/]*')
      .replace(/\?/g, '[^/]')}$`,
  );
  return existsSync(path.join(ROOT, dir)) && readdirSync(path.join(ROOT, dir)).some((f) => pattern.test(f));
}

function dockerignorePatterns(): string[] {
  if (!existsSync(path.join(ROOT, '.dockerignore'))) return [];
  return read('.dockerignore')
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
}

// ---------------------------------------------------------------------------------------------
// Running a healthcheck command

/** Runs `argv` (a `node …` healthcheck) with `env`, returning its exit code. */
function run(argv: string[], env: Record<string, string>): Promise<number | null> {
  const [cmd, ...args] = argv;
  expect(cmd, 'healthchecks run node: slim images have no curl or wget').toBe('node');
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { env: { PATH: process.env.PATH ?? '', ...env }, stdio: 'ignore', timeout: 15_000 });
    child.on('error', reject);
    child.on('exit', (code) => resolve(code));
  });
}

/** A local HTTP server answering `path` with `status` (anything else: 404); resolves its port and a close(). */
async function probeServer(probePath: string, status: number): Promise<{ port: number; close: () => Promise<void> }> {
  const server = createServer((req, res) => {
    res.statusCode = req.url === probePath ? status : 404;
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as AddressInfo).port, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

const KNOWN_ENV = new Set(Object.values(settings).map((s) => s.env));
const TEST_KEK = 'a1'.repeat(32);
/** `docker compose up` with nothing but the required key (a local trial), and with a real domain. */
const LOCAL_TRIAL = { GATEHOUSE_KEY_ENCRYPTION_KEY: TEST_KEK };
const REAL_DOMAIN = {
  GATEHOUSE_KEY_ENCRYPTION_KEY: TEST_KEK,
  GATEHOUSE_ISSUER: 'https://auth.example.com',
  POSTGRES_PASSWORD: 'a-strong-password',
  POSTGRES_OWNER_PASSWORD: 'the-owners-password',
  POSTGRES_APP_PASSWORD: 'the-instances-password',
};

/** The environment an instance runs with: the image's ENV, overridden by the compose file's. */
const instanceEnv = (name: string, vars: Record<string, string>) => ({ ...dockerfileEnv, ...interpolateAll(environmentOf(service(name)), vars) });

// ---------------------------------------------------------------------------------------------

describe('docker-compose.yml', () => {
  test('postgres is PostgreSQL with a persistent volume and a pg_isready healthcheck', () => {
    const pg = service('postgres');
    expect(pg.image).toMatch(/^postgres:\d+/);
    const hc = pg.healthcheck?.test;
    expect(hc, 'postgres needs a healthcheck so that the others can wait for it').toBeDefined();
    expect(Array.isArray(hc) ? hc.join(' ') : hc).toMatch(/pg_isready/);
    const mounts = (pg.volumes ?? []).map((v) => (typeof v === 'string' ? v.split(':')[0] : v.source));
    expect(mounts.some((m) => m !== undefined && Object.keys(compose.volumes ?? {}).includes(m)), 'a named volume keeps the data').toBe(true);
    expect(portsOf(pg), 'PostgreSQL is reached on the compose network only').toEqual([]);
  });

  test('migrate builds the image, runs `migrate` once after postgres is healthy, and nothing else migrates', () => {
    const migrate = service('migrate');
    expect(migrate.build).toBeDefined();
    expect(commandOf(migrate)).toEqual(['migrate']);
    expect(dependsOn(migrate, 'postgres')).toBe('service_healthy');
    expect(migrate.restart ?? 'no').toBe('no');
    expect(portsOf(migrate)).toEqual([]);
    // `gatehouse migrate` migrates whatever this says; the servers must not do it on their own.
    expect(environmentOf(migrate).GATEHOUSE_MIGRATE_ON_START ?? 'false').toBe('false');
  });

  test('two Gatehouse instances with one configuration: identical but for their names', () => {
    expect(INSTANCES.length).toBeGreaterThanOrEqual(2);
    expect(INSTANCES).toContain('gatehouse-2');
    for (const name of INSTANCES) expect(service(name), `${name} differs from gatehouse-1`).toEqual(service('gatehouse-1'));
  });

  test.each(INSTANCES)('%s serves only after postgres is healthy and migrate completed successfully', (name) => {
    const instance = service(name);
    expect(instance.build).toBeDefined();
    expect(commandOf(instance)).toEqual(['serve']);
    expect(dependsOn(instance, 'postgres')).toBe('service_healthy');
    expect(dependsOn(instance, 'migrate')).toBe('service_completed_successfully');
    expect(instance.restart).toBe('unless-stopped');
  });

  test.each(INSTANCES)('%s publishes no port: it trusts X-Forwarded-*, so only the proxy may reach it', (name) => {
    expect(environmentOf(service(name)).GATEHOUSE_TRUST_PROXY).toBe('true');
    expect(portsOf(service(name))).toEqual([]);
  });

  test.each(INSTANCES)('%s: its container healthcheck asks /readyz on PORT', (name) => {
    const argv = healthcheckArgv(service(name));
    expect(argv[0]).toBe('node');
    const port = instanceEnv(name, LOCAL_TRIAL).PORT;
    expect(argv.join(' ')).toContain(`127.0.0.1:${port}/readyz`);
  });

  test('the instances\' healthcheck passes on a 200 from /readyz and fails on a 503 or no answer', async () => {
    const argv = healthcheckArgv(service(INSTANCES[0]!));
    const port = instanceEnv(INSTANCES[0]!, LOCAL_TRIAL).PORT!;
    const at = (p: number) => argv.map((a) => a.replaceAll(`127.0.0.1:${port}/`, `127.0.0.1:${p}/`));
    const ready = await probeServer('/readyz', 200);
    const notReady = await probeServer('/readyz', 503);
    try {
      expect(await run(at(ready.port), {})).toBe(0);
      expect(await run(at(notReady.port), {})).not.toBe(0);
    } finally {
      await ready.close();
      await notReady.close();
    }
    const gone = await probeServer('/readyz', 200);
    await gone.close();
    expect(await run(at(gone.port), {})).not.toBe(0);
  });

  test.each(INSTANCES)('%s gets a stop grace period longer than GATEHOUSE_SHUTDOWN_TIMEOUT', (name) => {
    const grace = service(name).stop_grace_period;
    expect(grace, 'Docker\'s default (10s) leaves no margin: set stop_grace_period').toBeDefined();
    const config = loadConfig(instanceEnv(name, LOCAL_TRIAL));
    expect(composeSeconds(grace!)).toBeGreaterThanOrEqual(config.shutdownTimeout + 5);
  });

  test('migrate connects as the owner the init script creates, the instances as its runtime login, and they do not migrate on their own', () => {
    const roles = initRoles();
    for (const vars of [LOCAL_TRIAL, REAL_DOMAIN]) {
      const pgEnv = interpolateAll(environmentOf(service('postgres')), vars);
      const passwordOf = (variable: string) => pgEnv[variable];
      for (const [name, role] of [['migrate', roles.owner], ...INSTANCES.map((i) => [i, roles.app] as const)] as const) {
        const env = interpolateAll(environmentOf(service(name)), vars);
        const url = new URL(env.DATABASE_URL ?? '');
        expect(url.protocol).toMatch(/^postgres(ql)?:$/);
        expect(url.hostname).toBe('postgres');
        expect(Object.keys(compose.services)).toContain(url.hostname);
        expect(env.GATEHOUSE_MIGRATE_ON_START).toBe('false');
        expect(decodeURIComponent(url.username), `${name} connects as`).toBe(role.name);
        expect(decodeURIComponent(url.password), `${name}'s password is the one the init script sets`).toBe(passwordOf(role.passwordVariable));
        expect(url.pathname.slice(1)).toBe(roles.database);
      }
      // Three different secrets when the operator sets them.
      if (vars === REAL_DOMAIN) expect(new Set([pgEnv.POSTGRES_PASSWORD, pgEnv.POSTGRES_OWNER_PASSWORD, pgEnv.POSTGRES_APP_PASSWORD]).size).toBe(3);
    }
  });

  test('the postgres init script creates the owner (no superuser), the database it owns, gatehouse_runtime and the instances\' login as its member', () => {
    const pg = service('postgres');
    const mount = (pg.configs ?? []).find((c) => typeof c === 'object' && c.target?.startsWith('/docker-entrypoint-initdb.d/'));
    expect(mount, 'postgres mounts an init script into /docker-entrypoint-initdb.d/').toBeDefined();
    expect((mount as { target: string }).target).toMatch(/\.sh$/);
    const roles = initRoles();
    expect(roles.runtimeNoLogin, 'CREATE ROLE gatehouse_runtime NOLOGIN').toBe(true);
    expect(roles.app.inRuntime, `${roles.app.name} is IN ROLE gatehouse_runtime`).toBe(true);
    expect(roles.owner.attributes).not.toMatch(/SUPERUSER|CREATEROLE|BYPASSRLS/i);
    expect(roles.app.attributes).not.toMatch(/SUPERUSER|CREATEROLE|CREATEDB|BYPASSRLS/i);
    expect(roles.databaseOwner).toBe(roles.owner.name);
    // The script runs as the image's superuser, whose password the instances never see.
    const pgEnv = environmentOf(pg);
    expect(pgEnv.POSTGRES_USER).not.toBe(roles.owner.name);
    expect(pg.healthcheck?.test?.toString()).toContain(`-d ${roles.database}`);
  });

  test('the key-encryption key must be supplied: compose refuses to start without it', () => {
    for (const name of ['migrate', ...INSTANCES]) {
      const raw = environmentOf(service(name)).GATEHOUSE_KEY_ENCRYPTION_KEY ?? '';
      expect(raw).toMatch(/^\$\{GATEHOUSE_KEY_ENCRYPTION_KEY:\?[^}]*openssl rand -hex 32[^}]*\}$/);
      expect(() => interpolate(raw, {})).toThrow(/openssl rand -hex 32/);
      expect(interpolate(raw, { GATEHOUSE_KEY_ENCRYPTION_KEY: TEST_KEK })).toBe(TEST_KEK);
    }
  });

  test.each(['migrate', ...INSTANCES])('every variable %s sets is a Gatehouse setting', (name) => {
    const unknown = Object.keys(environmentOf(service(name))).filter((k) => !KNOWN_ENV.has(k));
    expect(unknown, `not in settings of src/config/config.ts: ${unknown.join(', ')}`).toEqual([]);
  });

  test.each(['migrate', ...INSTANCES])('the %s environment passes loadConfig() in production, behind the proxy', (name) => {
    const local = loadConfig(instanceEnv(name, LOCAL_TRIAL));
    expect(local.production).toBe(true);
    expect(local.issuer).toBe('https://localhost');
    expect(local.trustProxy).toBe(true);
    expect(local.tls, 'TLS ends at the proxy').toBeUndefined();
    expect(local.adminUrl).toBe('https://localhost:8443');
    expect(local.port).toBe(4000);
    expect(local.host).toBe('0.0.0.0');
    expect(local.adminHost).toBe('0.0.0.0');
    expect(local.migrateOnStart).toBe(false);
    expect(local.databaseUrl).toMatch(/@postgres:5432\//);
    expect(local.keyEncryptionKey?.toString('hex')).toBe(TEST_KEK);
    expect(local.warnings).toEqual([]);

    const real = loadConfig(instanceEnv(name, REAL_DOMAIN));
    expect(real.issuer).toBe('https://auth.example.com');
    expect(real.warnings).toEqual([]);
  });

  test('replacing the key-encryption key is an edit of .env: the previous key reaches every instance and migrate', () => {
    const oldKey = 'b2'.repeat(32);
    for (const name of ['migrate', ...INSTANCES]) {
      const rotating = loadConfig(instanceEnv(name, { ...LOCAL_TRIAL, GATEHOUSE_PREVIOUS_KEY_ENCRYPTION_KEYS: oldKey }));
      expect(rotating.keyEncryptionKey?.toString('hex')).toBe(TEST_KEK);
      expect(rotating.previousKeyEncryptionKeys.map((k) => k.toString('hex'))).toEqual([oldKey]);
      // Unset (the usual case), it is an empty string, which means "none".
      expect(loadConfig(instanceEnv(name, LOCAL_TRIAL)).previousKeyEncryptionKeys).toEqual([]);
    }
  });

  test.each(INSTANCES)('%s has an https issuer whatever the operator sets, and trusts the proxy', (name) => {
    for (const vars of [LOCAL_TRIAL, REAL_DOMAIN]) {
      const env = instanceEnv(name, vars);
      expect(new URL(env.GATEHOUSE_ISSUER!).protocol).toBe('https:');
      expect(new URL(env.GATEHOUSE_ADMIN_URL!).protocol).toBe('https:');
      expect(env.GATEHOUSE_TRUST_PROXY).toBe('true');
    }
  });

  test('migrate and the instances share one configuration, but for the database role they connect as', () => {
    const { DATABASE_URL: migrateUrl, ...migrate } = environmentOf(service('migrate'));
    for (const name of INSTANCES) {
      const { DATABASE_URL: instanceUrl, ...instance } = environmentOf(service(name));
      expect(migrate).toEqual(instance);
      const [a, b] = [new URL(interpolate(migrateUrl!, LOCAL_TRIAL)), new URL(interpolate(instanceUrl!, LOCAL_TRIAL))];
      expect([a.host, a.pathname]).toEqual([b.host, b.pathname]);
      expect(a.username).not.toBe(b.username);
    }
  });

  test('no service publishes an admin listener beyond this machine\'s loopback', () => {
    const adminPort = instanceEnv('gatehouse-1', LOCAL_TRIAL).GATEHOUSE_ADMIN_PORT;
    expect(adminPort).toBe('4001');
    // Gatehouse's admin port, wherever it appears, and the proxy's admin site.
    const adminSitePort = new URL(instanceEnv('gatehouse-1', LOCAL_TRIAL).GATEHOUSE_ADMIN_URL!).port || '443';
    for (const [name, s] of Object.entries(compose.services)) {
      for (const p of portsOf(s)) {
        const admin = (INSTANCES.includes(name) && p.target === adminPort) || (name === 'caddy' && p.target === adminSitePort);
        if (admin) expect(isLoopback(p.ip), `${name} publishes ${p.target} on ${p.ip || 'every interface'}`).toBe(true);
      }
    }
    expect(portsOf(service('caddy')).filter((p) => p.target === adminSitePort)).toEqual([{ ip: '127.0.0.1', published: adminSitePort, target: adminSitePort }]);
  });
});

describe('the TLS-terminating proxy (Caddy)', () => {
  test('is the official Caddy 2 image, with its certificates on a named volume', () => {
    const proxy = service('caddy');
    expect(proxy.image).toMatch(/^caddy:2(\.|$|-)/);
    const data = (proxy.volumes ?? []).map((v) => (typeof v === 'string' ? v.split(':') : [v.source, v.target]));
    expect(data.some(([source, target]) => target === '/data' && source !== undefined && Object.keys(compose.volumes ?? {}).includes(source))).toBe(true);
  });

  test('publishes https (and http, for ACME and redirects) on every interface', () => {
    const published = portsOf(service('caddy')).filter((p) => !p.ip).map((p) => p.target);
    expect(published).toContain('443');
    expect(published).toContain('80');
  });

  test('its Caddyfile is inline (compose configs), well formed, and trusts no client\'s X-Forwarded-*', () => {
    const nodes = parseCaddyfile(interpolate(caddyfileText(), LOCAL_TRIAL));
    expect(nodes.length).toBeGreaterThan(0);
    const everything = JSON.stringify(nodes);
    // Caddy is the first hop: with trusted_proxies it would pass on what a client claims.
    expect(everything).not.toContain('trusted_proxies');
    expect(everything).not.toMatch(/header_up\s*"?-?X-Forwarded/i);
  });

  test.each([
    ['a local trial', LOCAL_TRIAL],
    ['a real domain', REAL_DOMAIN],
  ])('with %s, its public site is exactly the issuer and balances over every instance\'s public port, ready ones only', (_label, vars) => {
    const env = instanceEnv('gatehouse-1', vars);
    const issuerSite = site(vars, env.GATEHOUSE_ISSUER!);
    expect(value(issuerSite.children, 'tls'), 'the issuer\'s certificate is automatic (ACME, or the local CA for localhost)').toBeUndefined();
    const proxies = directive(issuerSite.children, 'reverse_proxy');
    expect(proxies).toHaveLength(1);
    const upstreams = proxies[0]!.tokens.slice(1);
    expect(upstreams.sort()).toEqual(INSTANCES.map((name) => `${name}:${instanceEnv(name, vars).PORT}`).sort());
    const options = proxies[0]!.children;
    expect(value(options, 'health_uri')).toBe('/readyz');
    expect(value(options, 'health_port') ?? env.PORT).toBe(env.PORT);
    expect(value(options, 'health_interval')).toBeDefined();
  });

  test.each([
    ['a local trial', LOCAL_TRIAL],
    ['a real domain', REAL_DOMAIN],
  ])('with %s, its admin site is exactly GATEHOUSE_ADMIN_URL and balances over every instance\'s admin port', (_label, vars) => {
    const env = instanceEnv('gatehouse-1', vars);
    const adminSite = site(vars, env.GATEHOUSE_ADMIN_URL!);
    expect(value(adminSite.children, 'tls')).toBe('internal');
    const proxies = directive(adminSite.children, 'reverse_proxy');
    expect(proxies).toHaveLength(1);
    expect(proxies[0]!.tokens.slice(1).sort()).toEqual(INSTANCES.map((name) => `${name}:${instanceEnv(name, vars).GATEHOUSE_ADMIN_PORT}`).sort());
    // The admin listener has no /readyz: the public listener answers for the instance.
    expect(value(proxies[0]!.children, 'health_uri')).toBe('/readyz');
    expect(value(proxies[0]!.children, 'health_port')).toBe(env.PORT);
  });

  test('serves nothing but the issuer and the admin console', () => {
    const env = instanceEnv('gatehouse-1', LOCAL_TRIAL);
    expect(caddySites(LOCAL_TRIAL).map((n) => n.tokens.join(' ')).sort()).toEqual([env.GATEHOUSE_ADMIN_URL, env.GATEHOUSE_ISSUER].sort());
  });
});

describe('Dockerfile', () => {
  const fromImage = () => argList(all('FROM')[0]!.args)[0] ?? '';

  test('is based on a Node.js LTS line, 24 or newer, that package.json allows', () => {
    const from = all('FROM');
    expect(from).toHaveLength(1);
    const image = fromImage();
    const m = /^(?:docker\.io\/)?(?:library\/)?node:(\d+)(?:[.-]|$)/.exec(image);
    expect(m, `FROM ${image} is not a versioned node image`).not.toBeNull();
    const major = Number(m![1]);
    expect(major).toBeGreaterThanOrEqual(24);
    expect(major % 2, 'odd Node.js majors never become LTS (oidc-provider warns on a non-LTS runtime)').toBe(0);
    const engines = (JSON.parse(read('package.json')) as { engines?: { node?: string } }).engines?.node ?? '';
    const floor = /^>=\s*(\d+)/.exec(engines);
    expect(floor, `engines.node "${engines}" is not a ">=N" range`).not.toBeNull();
    expect(major).toBeGreaterThanOrEqual(Number(floor![1]));
  });

  test('installs production dependencies with npm ci from the lock file', () => {
    const runs = all('RUN').map((i) => i.args);
    expect(runs.some((r) => /\bnpm ci\b/.test(r) && /--omit=dev|--only=prod|--production/.test(r))).toBe(true);
    expect(runs.some((r) => /\bnpm (install|i)\b/.test(r)), 'npm install ignores the lock file').toBe(false);
    const copied = all('COPY').flatMap((i) => argList(i.args).slice(0, -1));
    expect(copied.some((c) => c === 'package-lock.json' || c === 'package*.json')).toBe(true);
  });

  test('every package the sources import at run time is a production dependency', () => {
    const pkg = JSON.parse(read('package.json')) as { dependencies?: Record<string, string> };
    const deps = new Set(Object.keys(pkg.dependencies ?? {}));
    const files = [
      path.join(ROOT, 'bin/gatehouse.js'),
      ...(readdirSync(path.join(ROOT, 'src'), { recursive: true }) as string[])
        .filter((f) => f.endsWith('.ts'))
        .map((f) => path.join(ROOT, 'src', f)),
    ];
    const missing = new Set<string>();
    for (const file of files) {
      const text = readFileSync(file, 'utf8');
      const specifiers = [
        ...[...text.matchAll(/^\s*import\s+(?!type\s)[^'"]*?from\s+['"]([^'"]+)['"]/gm)].map((m) => m[1]!),
        ...[...text.matchAll(/^\s*import\s+['"]([^'"]+)['"]/gm)].map((m) => m[1]!),
        ...[...text.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g)].map((m) => m[1]!),
        ...[...text.matchAll(/^\s*export\s+(?!type\s)[^'"]*?from\s+['"]([^'"]+)['"]/gm)].map((m) => m[1]!),
      ];
      for (const spec of specifiers) {
        if (spec.startsWith('.') || spec.startsWith('/') || spec.startsWith('node:')) continue;
        const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
        if (!deps.has(name)) missing.add(`${name} (${path.relative(ROOT, file)})`);
      }
    }
    expect([...missing], 'npm ci --omit=dev would not install these').toEqual([]);
    expect(deps.has('tsx'), 'bin/gatehouse.js loads the TypeScript sources through tsx').toBe(true);
  });

  test('every path it COPYs exists and is not excluded by .dockerignore', () => {
    const copies = all('COPY').concat(all('ADD'));
    expect(copies.length).toBeGreaterThan(0);
    const ignored = dockerignorePatterns();
    for (const instruction of copies) {
      expect(instruction.args, 'a multi-stage COPY --from is not expected here').not.toMatch(/--from=/);
      const sources = argList(instruction.args).slice(0, -1);
      expect(sources.length).toBeGreaterThan(0);
      for (const source of sources) {
        expect(contextPathExists(source), `COPY ${source}: no such file in the repository`).toBe(true);
        const top = source.replace(/^\.\//, '').split('/')[0]!;
        expect(ignored, `COPY ${source} but .dockerignore excludes it`).not.toContain(top);
      }
    }
  });

  test('copies everything the server reads at run time', () => {
    const copied = all('COPY').flatMap((i) => argList(i.args).slice(0, -1).map((s) => s.replace(/^\.\//, '').replace(/\/+$/, '')));
    for (const needed of ['bin', 'src', 'migrations', 'views']) {
      expect(copied.includes(needed) || copied.includes('.'), `${needed}/ is not copied into the image`).toBe(true);
    }
  });

  test('.dockerignore keeps local state, secrets and the host node_modules out of the build context', () => {
    const ignored = dockerignorePatterns().map((p) => p.replace(/^\/|\/$/g, ''));
    for (const p of ['node_modules', 'data', '.git', '.env']) expect(ignored).toContain(p);
  });

  test('runs as a non-root user', () => {
    const user = last('USER');
    expect(user, 'no USER instruction: the server would run as root').toBeDefined();
    const name = user!.args.split(':')[0]!.trim();
    expect(['root', '0']).not.toContain(name);
    // USER must come after the steps that need root (installing, chown) and before the entrypoint.
    expect(instructions.indexOf(user!)).toBeGreaterThan(instructions.lastIndexOf(last('RUN')!));
  });

  test('sets production mode, listens on all interfaces on the exposed PORT', () => {
    expect(dockerfileEnv).toMatchObject({ NODE_ENV: 'production', GATEHOUSE_HOST: '0.0.0.0', PORT: '4000' });
    const exposed = all('EXPOSE').flatMap((i) => argList(i.args)).map((p) => p.replace(/\/(tcp|udp)$/, ''));
    expect(exposed).toContain(dockerfileEnv.PORT);
    expect(exposed).toContain(dockerfileEnv.GATEHOUSE_ADMIN_PORT);
    for (const name of Object.keys(dockerfileEnv)) {
      expect(KNOWN_ENV.has(name), `ENV ${name} is not a Gatehouse setting`).toBe(true);
    }
  });

  test('stops on SIGTERM, which Gatehouse drains on', () => {
    expect(last('STOPSIGNAL')?.args.trim() ?? 'SIGTERM').toBe('SIGTERM');
  });

  test('has a HEALTHCHECK on /healthz (liveness, never the database) with node, bounded in time', () => {
    const healthcheck = last('HEALTHCHECK');
    expect(healthcheck, 'no HEALTHCHECK').toBeDefined();
    expect(healthcheck!.args).toMatch(/--timeout=\d+s/);
    const argv = healthcheckCommand();
    expect(argv[0], 'slim images have no curl or wget').toBe('node');
    expect(argv.join(' ')).toContain('/healthz');
    expect(argv.join(' ')).not.toContain('/readyz');
    expect(argv.join(' '), 'it follows PORT').toContain('process.env.PORT');
  });

  test('its HEALTHCHECK passes on a 200 from /healthz and fails on an error or no answer', async () => {
    const argv = healthcheckCommand();
    const alive = await probeServer('/healthz', 200);
    const failing = await probeServer('/healthz', 500);
    try {
      expect(await run(argv, { PORT: String(alive.port) })).toBe(0);
      expect(await run(argv, { PORT: String(failing.port) })).not.toBe(0);
    } finally {
      await alive.close();
      await failing.close();
    }
    const gone = await probeServer('/healthz', 200);
    await gone.close();
    expect(await run(argv, { PORT: String(gone.port) })).not.toBe(0);
  });

  test('the entrypoint runs bin/gatehouse.js, serving by default', () => {
    const entrypoint = argList(last('ENTRYPOINT')?.args ?? '[]');
    expect(entrypoint).toEqual(['node', 'bin/gatehouse.js']);
    expect(existsSync(path.join(ROOT, 'bin/gatehouse.js'))).toBe(true);
    expect(argList(last('CMD')?.args ?? '[]')).toEqual(['serve']);
    const workdir = last('WORKDIR')?.args;
    expect(workdir, 'a relative entrypoint needs a WORKDIR').toBeDefined();
  });
});

/** The HEALTHCHECK's command: `HEALTHCHECK [--flags] CMD ["node", …]` (exec form) or `CMD node …` (shell form). */
function healthcheckCommand(): string[] {
  const args = (last('HEALTHCHECK')?.args ?? '').replace(/^(--[a-z-]+=\S+\s+)+/, '').trim();
  const m = /^CMD\s+(.*)$/s.exec(args);
  if (!m) throw new Error(`HEALTHCHECK ${args}: expected CMD …`);
  return m[1]!.trim().startsWith('[') ? (JSON.parse(m[1]!) as string[]) : ['sh', '-c', m[1]!];
}
