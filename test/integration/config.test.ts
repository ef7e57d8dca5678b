/**
 * The configuration loader: defaults, parsing, and refusing to start on a bad configuration with
 * every problem listed at once.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { ConfigError, loadConfig, parseDuration, settings } from '../../src/config/config.ts';

const KEK = '0123456789abcdef'.repeat(4);
const DAY = 86400;

/** The ConfigError loadConfig throws for `env` (fails the test if it does not throw one). */
function configError(env: Record<string, string | undefined>): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
}

/** A valid production environment, to vary one setting at a time. */
const production = (extra: Record<string, string> = {}) => ({
  NODE_ENV: 'production',
  GATEHOUSE_ISSUER: 'https://auth.example.com',
  GATEHOUSE_KEY_ENCRYPTION_KEY: KEK,
  DATABASE_URL: 'postgres://gatehouse:secret@db.internal:5432/gatehouse',
  GATEHOUSE_TRUST_PROXY: 'true',
  ...extra,
});

describe('defaults', () => {
  test('an empty environment gives a working development configuration', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      production: false,
      issuer: 'http://localhost:4000',
      port: 4000,
      host: '127.0.0.1',
      registration: 'open',
      refreshTokenIdleTtl: 30 * DAY,
      refreshTokenAbsoluteTtl: 90 * DAY,
      accessTokenTtl: 600,
      authorizationCodeTtl: 60,
      sessionTtl: 12 * 3600,
      migrateOnStart: true,
      trustProxy: false,
      databasePoolSize: 10,
      dataDir: './data',
      logLevel: 'info',
    });
    expect(config.databaseUrl).toBeUndefined();
    expect(config.keyEncryptionKey).toBeUndefined();
  });

  test('without a key-encryption key, there is a loud warning about the development key', () => {
    const { warnings } = loadConfig({});
    const warning = warnings.find((w) => w.includes('GATEHOUSE_KEY_ENCRYPTION_KEY'));
    expect(warning).toBeDefined();
    expect(warning).toMatch(/development/i);
    expect(loadConfig({ GATEHOUSE_KEY_ENCRYPTION_KEY: KEK }).warnings).toEqual([]);
  });

  test('loadConfig(env) reads only the environment it is given', () => {
    const saved = process.env.PORT;
    process.env.PORT = 'not a port';
    try {
      expect(loadConfig({}).port).toBe(4000);
    } finally {
      if (saved === undefined) delete process.env.PORT;
      else process.env.PORT = saved;
    }
  });

  test('an empty variable counts as unset', () => {
    expect(loadConfig({ PORT: '', GATEHOUSE_REGISTRATION: '', GATEHOUSE_ISSUER: '' })).toMatchObject({
      port: 4000,
      registration: 'open',
      issuer: 'http://localhost:4000',
    });
  });

  test('PORT changes the default issuer', () => {
    expect(loadConfig({ PORT: '5123' })).toMatchObject({ port: 5123, issuer: 'http://localhost:5123' });
    expect(loadConfig({ PORT: '5123', GATEHOUSE_ISSUER: 'http://127.0.0.1:9000' }).issuer).toBe('http://127.0.0.1:9000');
  });

  test('the key-encryption key is decoded to 32 bytes', () => {
    const key = loadConfig({ GATEHOUSE_KEY_ENCRYPTION_KEY: KEK.toUpperCase() }).keyEncryptionKey;
    expect(key).toBeInstanceOf(Buffer);
    expect(key?.toString('hex')).toBe(KEK);
  });

  test('migrations run at start by default only for the embedded database', () => {
    expect(loadConfig({}).migrateOnStart).toBe(true);
    expect(loadConfig({ DATABASE_URL: 'postgres://db/gatehouse' }).migrateOnStart).toBe(false);
    expect(loadConfig({ DATABASE_URL: 'postgres://db/gatehouse', GATEHOUSE_MIGRATE_ON_START: 'true' }).migrateOnStart).toBe(true);
    expect(loadConfig({ GATEHOUSE_MIGRATE_ON_START: 'false' }).migrateOnStart).toBe(false);
  });

  test('booleans and enumerations', () => {
    expect(loadConfig({ GATEHOUSE_MIGRATE_ON_START: 'false', GATEHOUSE_TRUST_PROXY: 'yes' })).toMatchObject({
      migrateOnStart: false,
      trustProxy: true,
    });
    expect(loadConfig({ GATEHOUSE_REGISTRATION: 'disabled' }).registration).toBe('disabled');
    expect(configError({ GATEHOUSE_MIGRATE_ON_START: 'sometimes' }).problems[0]).toMatch(/^GATEHOUSE_MIGRATE_ON_START:/);
    expect(configError({ GATEHOUSE_REGISTRATION: 'closed' }).problems[0]).toMatch(/^GATEHOUSE_REGISTRATION:/);
    expect(configError({ GATEHOUSE_LOG_LEVEL: 'loud' }).problems[0]).toMatch(/^GATEHOUSE_LOG_LEVEL:/);
  });
});

describe('durations', () => {
  test('units and bare seconds', () => {
    expect(loadConfig({ GATEHOUSE_ACCESS_TOKEN_TTL: '10m' }).accessTokenTtl).toBe(600);
    expect(loadConfig({ GATEHOUSE_ACCESS_TOKEN_TTL: '900' }).accessTokenTtl).toBe(900);
    expect(loadConfig({ GATEHOUSE_ACCESS_TOKEN_TTL: '2h' }).accessTokenTtl).toBe(7200);
    expect(loadConfig({ GATEHOUSE_REFRESH_TOKEN_IDLE_TTL: '30d', GATEHOUSE_REFRESH_TOKEN_ABSOLUTE_TTL: '60d' })).toMatchObject({
      refreshTokenIdleTtl: 30 * DAY,
      refreshTokenAbsoluteTtl: 60 * DAY,
    });
    expect(loadConfig({ GATEHOUSE_SWEEP_INTERVAL: '0' }).sweepInterval).toBe(0);
  });

  test.each(['10 minutes', 'ten', '1.5h', '-5', '10w', '5mm'])('"%s" is refused', (value) => {
    const { problems } = configError({ GATEHOUSE_ACCESS_TOKEN_TTL: value });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^GATEHOUSE_ACCESS_TOKEN_TTL: must be a duration/);
  });

  test('out-of-range durations are refused', () => {
    expect(configError({ GATEHOUSE_ACCESS_TOKEN_TTL: '5' }).problems[0]).toMatch(/^GATEHOUSE_ACCESS_TOKEN_TTL: must be between 30s and 86400s/);
    expect(configError({ GATEHOUSE_AUTHORIZATION_CODE_TTL: '1h' }).problems[0]).toMatch(/^GATEHOUSE_AUTHORIZATION_CODE_TTL:/);
  });

  test('an idle refresh-token lifetime longer than the absolute one is refused', () => {
    const { problems } = configError({ GATEHOUSE_REFRESH_TOKEN_IDLE_TTL: '100d' });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^GATEHOUSE_REFRESH_TOKEN_IDLE_TTL: .*GATEHOUSE_REFRESH_TOKEN_ABSOLUTE_TTL/);
    expect(configError({ GATEHOUSE_REFRESH_TOKEN_IDLE_TTL: '2d', GATEHOUSE_REFRESH_TOKEN_ABSOLUTE_TTL: '1d' }).problems).toHaveLength(1);
    // Equal is fine.
    expect(loadConfig({ GATEHOUSE_REFRESH_TOKEN_IDLE_TTL: '7d', GATEHOUSE_REFRESH_TOKEN_ABSOLUTE_TTL: '7d' }).refreshTokenIdleTtl).toBe(7 * DAY);
  });
});

describe('parseDuration', () => {
  test.each([
    ['600', 600],
    ['600s', 600],
    ['10m', 600],
    ['10M', 600],
    ['12h', 43200],
    ['30d', 30 * DAY],
    [' 5 m ', 300],
    ['0', 0],
  ])('%j is %i seconds', (input, seconds) => {
    expect(parseDuration(input)).toBe(seconds);
  });

  test.each(['', ' ', 'm', 'abc', '-5', '1.5h', '10w', '10 minutes', '1h30m', '0x10'])('%j is not a duration', (input) => {
    expect(parseDuration(input)).toBeUndefined();
  });
});

describe('start-up refuses a bad configuration, listing every problem at once', () => {
  test('four problems, one ConfigError', () => {
    const err = configError({
      NODE_ENV: 'production',
      GATEHOUSE_ISSUER: 'http://auth.example.com',
      PORT: 'abc',
    });
    expect(err.problems).toHaveLength(4);
    for (const name of ['GATEHOUSE_ISSUER', 'GATEHOUSE_KEY_ENCRYPTION_KEY', 'DATABASE_URL', 'PORT']) {
      expect(
        err.problems.filter((p) => p.startsWith(`${name}:`)),
        `one problem about ${name} in ${JSON.stringify(err.problems)}`,
      ).toHaveLength(1);
    }
    // The message shows them all, one per line.
    for (const p of err.problems) expect(err.message).toContain(p);
    expect(err.message.split('\n')).toHaveLength(5);
    expect(err.problems.find((p) => p.startsWith('GATEHOUSE_ISSUER:'))).toMatch(/https/);
    expect(err.problems.find((p) => p.startsWith('GATEHOUSE_KEY_ENCRYPTION_KEY:'))).toMatch(/openssl rand -hex 32/);
  });

  test('a valid production configuration is accepted without warnings', () => {
    const config = loadConfig(production());
    expect(config).toMatchObject({ production: true, issuer: 'https://auth.example.com' });
    expect(config.databaseUrl).toBe('postgres://gatehouse:secret@db.internal:5432/gatehouse');
    expect(config.warnings).toEqual([]);
  });

  test.each([
    ['a path', 'https://auth.example.com/oauth'],
    ['a trailing slash', 'https://auth.example.com/'],
    ['a path with a trailing slash', 'https://auth.example.com/oauth/'],
    ['a query', 'https://auth.example.com?tenant=1'],
    ['an empty query', 'https://auth.example.com?'],
    ['a fragment', 'https://auth.example.com#top'],
    ['an empty fragment', 'https://auth.example.com#'],
    ['credentials', 'https://admin:pw@auth.example.com'],
    ['another scheme', 'ftp://auth.example.com'],
    ['no scheme', 'auth.example.com'],
  ])('an issuer with %s is refused', (_what, issuer) => {
    for (const env of [{ GATEHOUSE_ISSUER: issuer }, production({ GATEHOUSE_ISSUER: issuer })]) {
      const { problems } = configError(env);
      expect(problems).toHaveLength(1);
      expect(problems[0]).toMatch(/^GATEHOUSE_ISSUER:/);
    }
  });

  test('http is refused in production except on loopback', () => {
    expect(configError(production({ GATEHOUSE_ISSUER: 'http://auth.example.com' })).problems).toEqual([
      expect.stringMatching(/^GATEHOUSE_ISSUER: must be https/),
    ]);
    for (const issuer of ['http://localhost', 'http://localhost:4000', 'http://127.0.0.1:8080', 'http://[::1]:4000']) {
      expect(loadConfig(production({ GATEHOUSE_ISSUER: issuer })).issuer).toBe(issuer);
    }
  });

  test('http on a public host is allowed outside production, with a warning', () => {
    const config = loadConfig({ GATEHOUSE_ISSUER: 'http://auth.example.com', GATEHOUSE_KEY_ENCRYPTION_KEY: KEK });
    expect(config.issuer).toBe('http://auth.example.com');
    expect(config.warnings).toEqual([expect.stringContaining('GATEHOUSE_ISSUER')]);
  });

  test.each([
    ['not hex', 'this-is-my-secret-key-do-not-print-it-in-logs-please-0123456789'],
    ['63 hex characters', 'abcdef0123456789'.repeat(4).slice(0, 63)],
    ['65 hex characters', `${'abcdef0123456789'.repeat(4)}a`],
    ['base64', 'q83vASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4k='],
  ])('a key-encryption key that is %s is refused, without echoing it', (_what, value) => {
    const err = configError({ GATEHOUSE_KEY_ENCRYPTION_KEY: value });
    expect(err.problems).toHaveLength(1);
    expect(err.problems[0]).toMatch(/^GATEHOUSE_KEY_ENCRYPTION_KEY: must be 64 hex characters/);
    expect(err.problems[0]).toContain('openssl rand -hex 32');
    expect(err.message).not.toContain(value);
    expect(err.message).not.toContain(value.slice(0, 16));
  });

  test('in production, a malformed key-encryption key is one problem, not also "required"', () => {
    const value = 'this-is-my-secret-key-do-not-print-it-in-logs-please-0123456789';
    const err = configError(production({ GATEHOUSE_KEY_ENCRYPTION_KEY: value }));
    expect(err.message).not.toContain(value.slice(0, 16));
    expect(err.problems).toEqual([expect.stringMatching(/^GATEHOUSE_KEY_ENCRYPTION_KEY: must be 64 hex characters.*openssl rand -hex 32/)]);
  });

  test('a bad value of an ordinary setting is shown, to help fix it', () => {
    expect(configError({ PORT: '70000' }).problems).toEqual([expect.stringMatching(/^PORT: must be between 0 and 65535 \(got "70000"\)/)]);
    expect(configError({ GATEHOUSE_DATABASE_POOL_SIZE: '0' }).problems[0]).toMatch(/^GATEHOUSE_DATABASE_POOL_SIZE:/);
  });
});

describe('transport: native TLS or a trusted proxy', () => {
  const cert = { GATEHOUSE_TLS_CERT_FILE: '/etc/gatehouse/cert.pem', GATEHOUSE_TLS_KEY_FILE: '/etc/gatehouse/key.pem' };

  test('in production an https issuer needs TLS files or a trusted TLS-terminating proxy', () => {
    expect(configError(production({ GATEHOUSE_TRUST_PROXY: 'false' })).problems).toEqual([
      expect.stringMatching(/^GATEHOUSE_TRUST_PROXY: the issuer is https, so either Gatehouse serves TLS \(GATEHOUSE_TLS_CERT_FILE/),
    ]);
    const native = loadConfig(production({ GATEHOUSE_TRUST_PROXY: 'false', GATEHOUSE_ADMIN_URL: 'https://admin.example.com', ...cert }));
    expect(native.tls).toEqual({ certFile: '/etc/gatehouse/cert.pem', keyFile: '/etc/gatehouse/key.pem' });
    expect(native.warnings).toEqual([]);
    expect(loadConfig(production()).tls).toBeUndefined();
  });

  test('outside production the same is a warning', () => {
    const config = loadConfig({ GATEHOUSE_ISSUER: 'https://auth.example.com', GATEHOUSE_KEY_ENCRYPTION_KEY: KEK });
    expect(config.warnings).toEqual([expect.stringContaining('GATEHOUSE_TRUST_PROXY is off and no TLS certificate is set')]);
  });

  test('the certificate and key come together, with an https issuer and an https admin URL', () => {
    expect(configError({ GATEHOUSE_ISSUER: 'https://auth.example.com', GATEHOUSE_TLS_CERT_FILE: '/c.pem' }).problems).toContainEqual(
      'GATEHOUSE_TLS_CERT_FILE and GATEHOUSE_TLS_KEY_FILE: set both or neither',
    );
    expect(configError({ GATEHOUSE_ISSUER: 'http://localhost:4000', ...cert }).problems).toEqual([
      expect.stringMatching(/^GATEHOUSE_ISSUER: must be https when GATEHOUSE_TLS_CERT_FILE is set/),
    ]);
    expect(configError({ GATEHOUSE_ISSUER: 'https://localhost:4000', GATEHOUSE_ADMIN_URL: 'http://localhost:4001', ...cert }).problems).toEqual([
      expect.stringMatching(/^GATEHOUSE_ADMIN_URL: must be https when GATEHOUSE_TLS_CERT_FILE is set/),
    ]);
    // Without an explicit admin URL it follows the listener: https.
    expect(loadConfig({ GATEHOUSE_ISSUER: 'https://localhost:4000', GATEHOUSE_KEY_ENCRYPTION_KEY: KEK, ...cert }).adminUrl).toBe('https://localhost:4001');
  });
});

describe('settings that turn a safe default off are warnings (and config.warning audit events at start)', () => {
  test.each([
    ['GATEHOUSE_CLIENT_APPROVAL', 'automatic', /approved on arrival with no scope ceiling/],
    ['GATEHOUSE_TRUSTED_CLIENT_HOSTS', 'claude.ai vscode.dev', /from claude.ai, vscode.dev are approved on arrival with the "defaults" ceiling/],
    ['GATEHOUSE_KEY_ROTATION_INTERVAL', '0', /scheduled signing-key rotation is off/],
    ['GATEHOUSE_PENDING_CLIENT_TTL', '0', /never approved are kept forever/],
  ])('%s=%s', (name, value, message) => {
    expect(loadConfig(production()).warnings).toEqual([]);
    const { warnings } = loadConfig(production({ [name]: value }));
    expect(warnings).toEqual([expect.stringMatching(message)]);
    expect(warnings[0]).toMatch(new RegExp(`^${name}`));
  });
});

describe('README', () => {
  const README = fileURLToPath(new URL('../../README.md', import.meta.url));

  test.each(Object.values(settings).map((s) => [s.env]))('documents %s', (env) => {
    expect(existsSync(README), 'README.md is missing').toBe(true);
    expect(readFileSync(README, 'utf8')).toContain(env);
  });
});
