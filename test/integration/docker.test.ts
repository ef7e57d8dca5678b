/**
 * The container files, checked without Docker: what someone running `docker compose up` relies on.
 * docker-compose.yml is parsed as YAML, the Dockerfile as text, and the compose environment is fed
 * to the real config loader, so a setting renamed in src/config/config.ts breaks this test rather
 * than a deployment.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { parse } from 'yaml';
import { loadConfig, settings } from '../../src/config/config.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const read = (file: string) => readFileSync(path.join(ROOT, file), 'utf8');

// ---------------------------------------------------------------------------------------------
// docker-compose.yml

interface ComposeService {
  image?: string;
  build?: string | { context?: string; dockerfile?: string };
  command?: string[] | string;
  environment?: Record<string, string | number | boolean | null> | string[];
  depends_on?: Record<string, { condition?: string }> | string[];
  ports?: (string | number | { target?: number | string; published?: number | string })[];
  healthcheck?: { test?: string[] | string };
  restart?: string;
  volumes?: (string | { type?: string; source?: string; target?: string })[];
}

interface ComposeFile {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
}

const compose = parse(read('docker-compose.yml')) as ComposeFile;

function service(name: string): ComposeService {
  const s = compose.services[name];
  if (!s) throw new Error(`docker-compose.yml has no service "${name}"`);
  return s;
}

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
 * ${VAR?message}, with `vars` standing for the shell environment of `docker compose up`.
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

/** Container ports a service publishes (short syntax "HOST:CONTAINER[/proto]", "IP:HOST:CONTAINER" or long syntax). */
function publishedContainerPorts(s: ComposeService): { published: string; target: string }[] {
  return (s.ports ?? []).map((p) => {
    if (typeof p === 'object') return { published: String(p.published ?? ''), target: String(p.target ?? '') };
    const parts = String(p).replace(/\/(tcp|udp)$/, '').split(':');
    const target = parts.at(-1) ?? '';
    const published = parts.length > 1 ? (parts.at(-2) ?? '') : '';
    return { published, target };
  });
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

const KNOWN_ENV = new Set(Object.values(settings).map((s) => s.env));
const TEST_KEK = 'a1'.repeat(32);

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
  });

  test('migrate builds the image, runs `migrate` once after postgres is healthy', () => {
    const migrate = service('migrate');
    expect(migrate.build).toBeDefined();
    expect(commandOf(migrate)).toEqual(['migrate']);
    expect(dependsOn(migrate, 'postgres')).toBe('service_healthy');
    expect(migrate.restart ?? 'no').toBe('no');
  });

  test('gatehouse serves only after postgres is healthy and migrate completed successfully', () => {
    const gatehouse = service('gatehouse');
    expect(gatehouse.build).toBeDefined();
    expect(commandOf(gatehouse)).toEqual(['serve']);
    expect(dependsOn(gatehouse, 'postgres')).toBe('service_healthy');
    expect(dependsOn(gatehouse, 'migrate')).toBe('service_completed_successfully');
  });

  test('gatehouse uses the postgres service, does not migrate on its own, and publishes PORT', () => {
    const env = interpolateAll(environmentOf(service('gatehouse')), { GATEHOUSE_KEY_ENCRYPTION_KEY: TEST_KEK });
    const url = new URL(env.DATABASE_URL ?? '');
    expect(url.protocol).toMatch(/^postgres(ql)?:$/);
    expect(url.hostname).toBe('postgres');
    expect(Object.keys(compose.services)).toContain(url.hostname);
    expect(env.GATEHOUSE_MIGRATE_ON_START).toBe('false');

    // The credentials in DATABASE_URL are the ones the postgres container is created with.
    const pgEnv = interpolateAll(environmentOf(service('postgres')), {});
    expect(decodeURIComponent(url.username)).toBe(pgEnv.POSTGRES_USER ?? 'postgres');
    expect(decodeURIComponent(url.password)).toBe(pgEnv.POSTGRES_PASSWORD);
    expect(url.pathname.slice(1)).toBe(pgEnv.POSTGRES_DB ?? pgEnv.POSTGRES_USER ?? 'postgres');

    const port = env.PORT ?? dockerfileEnv.PORT;
    expect(port).toBe('4000');
    expect(publishedContainerPorts(service('gatehouse'))).toContainEqual({ published: '4000', target: port });
    // The server must listen on every interface of the container, not only its loopback.
    expect(env.GATEHOUSE_HOST ?? dockerfileEnv.GATEHOUSE_HOST).toBe('0.0.0.0');
  });

  test('the admin console listens on its own port, published on the host\'s loopback only', () => {
    const env = interpolateAll(environmentOf(service('gatehouse')), { GATEHOUSE_KEY_ENCRYPTION_KEY: TEST_KEK });
    const adminPort = env.GATEHOUSE_ADMIN_PORT ?? dockerfileEnv.GATEHOUSE_ADMIN_PORT;
    expect(adminPort).toBe('4001');
    const published = (service('gatehouse').ports ?? []).map(String).filter((p) => p.endsWith(`:${adminPort}`));
    expect(published).toEqual([`127.0.0.1:4001:${adminPort}`]);
    expect(env.GATEHOUSE_ADMIN_URL).toBe('http://localhost:4001');
  });

  test('the key-encryption key must be supplied: compose refuses to start without it', () => {
    const raw = environmentOf(service('gatehouse')).GATEHOUSE_KEY_ENCRYPTION_KEY ?? '';
    expect(raw).toMatch(/^\$\{GATEHOUSE_KEY_ENCRYPTION_KEY:\?[^}]*openssl rand -hex 32[^}]*\}$/);
    expect(() => interpolate(raw, {})).toThrow(/openssl rand -hex 32/);
    expect(interpolate(raw, { GATEHOUSE_KEY_ENCRYPTION_KEY: TEST_KEK })).toBe(TEST_KEK);
  });

  test.each(['migrate', 'gatehouse'])('every variable %s sets is a Gatehouse setting', (name) => {
    const unknown = Object.keys(environmentOf(service(name))).filter((k) => !KNOWN_ENV.has(k));
    expect(unknown, `not in settings of src/config/config.ts: ${unknown.join(', ')}`).toEqual([]);
  });

  test.each(['migrate', 'gatehouse'])('the %s environment passes loadConfig() (the stack would start)', (name) => {
    const env = {
      ...dockerfileEnv, // the image's ENV, overridden by the compose file's environment
      ...interpolateAll(environmentOf(service(name)), { GATEHOUSE_KEY_ENCRYPTION_KEY: TEST_KEK }),
    };
    const config = loadConfig(env);
    expect(config.production).toBe(true);
    expect(config.issuer).toBe('http://localhost:4000');
    expect(config.port).toBe(4000);
    expect(config.host).toBe('0.0.0.0');
    expect(config.migrateOnStart).toBe(false);
    expect(config.databaseUrl).toMatch(/@postgres:5432\//);
    expect(config.keyEncryptionKey?.toString('hex')).toBe(TEST_KEK);
    expect(config.warnings).toEqual([]);
  });

  test('migrate and gatehouse share one configuration', () => {
    expect(environmentOf(service('migrate'))).toEqual(environmentOf(service('gatehouse')));
  });
});

describe('Dockerfile', () => {
  test('is based on Node 22 or newer', () => {
    const from = all('FROM');
    expect(from).toHaveLength(1);
    const image = argList(from[0]!.args)[0] ?? '';
    const m = /^(?:docker\.io\/)?(?:library\/)?node:(\d+)/.exec(image);
    expect(m, `FROM ${image} is not a versioned node image`).not.toBeNull();
    expect(Number(m![1])).toBeGreaterThanOrEqual(22);
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

  test('.dockerignore keeps local state and the host node_modules out of the build context', () => {
    const ignored = dockerignorePatterns().map((p) => p.replace(/^\/|\/$/g, ''));
    for (const p of ['node_modules', 'data', '.git']) expect(ignored).toContain(p);
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

  test('the entrypoint runs bin/gatehouse.js, serving by default', () => {
    const entrypoint = argList(last('ENTRYPOINT')?.args ?? '[]');
    expect(entrypoint).toEqual(['node', 'bin/gatehouse.js']);
    expect(existsSync(path.join(ROOT, 'bin/gatehouse.js'))).toBe(true);
    expect(argList(last('CMD')?.args ?? '[]')).toEqual(['serve']);
    const workdir = last('WORKDIR')?.args;
    expect(workdir, 'a relative entrypoint needs a WORKDIR').toBeDefined();
  });
});
