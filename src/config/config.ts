/**
 * The one configuration schema. Every setting is named, described and defaulted here; the README's
 * configuration table is checked against {@link settings} by a test, so the two cannot drift.
 *
 * This is the only module that reads `process.env` (conventions §4).
 */
import { z } from 'zod';

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

/** Parses "600", "600s", "10m", "12h", "30d" into seconds. */
export function parseDuration(value: string): number | undefined {
  const m = /^\s*(\d+)\s*([smhd]?)\s*$/i.exec(value);
  if (!m) return undefined;
  const n = Number(m[1]);
  const unit = (m[2] ?? '').toLowerCase();
  const factor = unit === 'm' ? 60 : unit === 'h' ? 3600 : unit === 'd' ? 86400 : 1;
  return n * factor;
}

const duration = (min: number, max: number) =>
  z
    .string()
    .transform((v, ctx) => {
      const s = parseDuration(v);
      if (s === undefined) {
        ctx.addIssue({ code: 'custom', message: 'must be a duration such as 600, 10m, 12h or 30d' });
        return z.NEVER;
      }
      if (s < min || s > max) {
        ctx.addIssue({ code: 'custom', message: `must be between ${min}s and ${max}s` });
        return z.NEVER;
      }
      return s;
    });

const bool = z
  .string()
  .transform((v, ctx) => {
    const s = v.trim().toLowerCase();
    if (['1', 'true', 'yes', 'on'].includes(s)) return true;
    if (['0', 'false', 'no', 'off'].includes(s)) return false;
    ctx.addIssue({ code: 'custom', message: 'must be true or false' });
    return z.NEVER;
  });

const port = z
  .string()
  .regex(/^\d+$/, 'must be a port number')
  .transform(Number)
  .refine((n) => n >= 0 && n <= 65535, 'must be between 0 and 65535');

const int = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d+$/, 'must be a whole number')
    .transform(Number)
    .refine((n) => n >= min && n <= max, `must be between ${min} and ${max}`);

/** A setting: its environment variable, what it means, and its default (as the operator would type it). */
export interface Setting {
  env: string;
  description: string;
  default?: string;
  schema: z.ZodType<unknown, string>;
}

const DAY = 86400;

/** Every setting Gatehouse reads. Order is the order of the README table. */
export const settings = {
  production: {
    env: 'NODE_ENV',
    description:
      '`production` turns on production mode: the issuer must be https (or loopback), a key-encryption key and DATABASE_URL are required.',
    default: 'development',
    schema: z.string().transform((v) => v === 'production'),
  },
  port: {
    env: 'PORT',
    description: 'TCP port of the public listener (issuer, login and consent pages).',
    default: '4000',
    schema: port,
  },
  host: {
    env: 'GATEHOUSE_HOST',
    description: 'Address the public listener binds to. Use 0.0.0.0 in a container.',
    default: '127.0.0.1',
    schema: z.string().min(1),
  },
  adminPort: {
    env: 'GATEHOUSE_ADMIN_PORT',
    description: 'TCP port of the admin listener (the admin console and the admin API under /api/v1). Keep it off the internet.',
    default: '4001',
    schema: port,
  },
  adminHost: {
    env: 'GATEHOUSE_ADMIN_HOST',
    description: 'Address the admin listener binds to. The default keeps the console on this machine.',
    default: '127.0.0.1',
    schema: z.string().min(1),
  },
  adminUrl: {
    env: 'GATEHOUSE_ADMIN_URL',
    description:
      'The URL administrators use to reach the console, without a path. Form posts from any other origin are refused; under https the session cookie is Secure and __Host- prefixed. Defaults to http://localhost:GATEHOUSE_ADMIN_PORT.',
    schema: z.string(),
  },
  issuer: {
    env: 'GATEHOUSE_ISSUER',
    description:
      'The issuer identifier: the exact URL clients use to reach Gatehouse, without a path or trailing slash. Defaults to http://localhost:PORT.',
    schema: z.string(),
  },
  databaseUrl: {
    env: 'DATABASE_URL',
    description: 'PostgreSQL connection string. When unset, an embedded PostgreSQL (PGlite) under GATEHOUSE_DATA_DIR is used.',
    schema: z.string().min(1),
  },
  dataDir: {
    env: 'GATEHOUSE_DATA_DIR',
    description: 'Folder for the embedded database when DATABASE_URL is unset.',
    default: './data',
    schema: z.string().min(1),
  },
  databasePoolSize: {
    env: 'GATEHOUSE_DATABASE_POOL_SIZE',
    description: 'Maximum PostgreSQL connections per process.',
    default: '10',
    schema: int(1, 500),
  },
  databaseTimeout: {
    env: 'GATEHOUSE_DATABASE_TIMEOUT',
    description:
      'The longest Gatehouse waits on PostgreSQL: for a connection, and for the answer to each statement. Past it the request is answered 503 (temporarily_unavailable) and the connection is discarded, so a hung database or a network that drops packets never leaves requests hanging. PostgreSQL is bounded too (`statement_timeout` and `lock_timeout` at this value, `idle_in_transaction_session_timeout` at twice it), and every commit must happen a quarter of this (at most 1 s) before the bound, or PostgreSQL refuses it: a request answered 503 never commits later. Raise it only if legitimate statements take longer. Migrations are not bounded; the embedded database is in-process and not affected.',
    default: '5s',
    schema: duration(1, 600),
  },
  keyEncryptionKey: {
    env: 'GATEHOUSE_KEY_ENCRYPTION_KEY',
    description:
      'Key that encrypts private signing keys and cookie keys at rest: 32 bytes as 64 hex characters (generate one with `openssl rand -hex 32`). Required in production; in development a fixed development key is used with a warning.',
    schema: z
      .string()
      .regex(/^[0-9a-fA-F]{64}$/, 'must be 64 hex characters: generate one with `openssl rand -hex 32`'),
  },
  previousKeyEncryptionKeys: {
    env: 'GATEHOUSE_PREVIOUS_KEY_ENCRYPTION_KEYS',
    description:
      'While replacing GATEHOUSE_KEY_ENCRYPTION_KEY: the old key(s), comma-separated, 64 hex characters each. They only decrypt; everything is encrypted under GATEHOUSE_KEY_ENCRYPTION_KEY. Set the new key with the old one here on every instance, run `gatehouse keys rewrap`, then remove this setting.',
    schema: z.string().transform((v, ctx) => {
      const keys = v.split(',').map((k) => k.trim());
      // Never echo a key, not even a malformed one: name its position instead.
      const bad = keys.map((k, i) => (/^[0-9a-fA-F]{64}$/.test(k) ? 0 : i + 1)).filter((i) => i > 0);
      if (bad.length) {
        ctx.addIssue({ code: 'custom', message: `every key must be 64 hex characters, comma-separated (not key ${bad.join(', ')} of ${keys.length})` });
        return z.NEVER;
      }
      return keys.map((k) => k.toLowerCase());
    }),
  },
  migrateOnStart: {
    env: 'GATEHOUSE_MIGRATE_ON_START',
    description:
      'Apply pending migrations when the server (or a CLI command) starts. Defaults to true for the embedded database and false with DATABASE_URL, where `gatehouse migrate` is a deliberate deploy step; without it, start-up refuses a database whose schema is older than this version expects. A schema newer than this version is always refused.',
    schema: bool,
  },
  trustProxy: {
    env: 'GATEHOUSE_TRUST_PROXY',
    description:
      'Trust X-Forwarded-* headers from a TLS-terminating reverse proxy. In production an https issuer needs this or GATEHOUSE_TLS_CERT_FILE.',
    default: 'false',
    schema: bool,
  },
  tlsCertFile: {
    env: 'GATEHOUSE_TLS_CERT_FILE',
    description:
      'Serve TLS natively: the certificate chain (PEM) for both listeners. Set with GATEHOUSE_TLS_KEY_FILE. The files are re-read when they change (for example after a renewal), without a restart.',
    schema: z.string().min(1),
  },
  tlsKeyFile: {
    env: 'GATEHOUSE_TLS_KEY_FILE',
    description: 'The private key (PEM) of GATEHOUSE_TLS_CERT_FILE.',
    schema: z.string().min(1),
  },
  registration: {
    env: 'GATEHOUSE_REGISTRATION',
    description: 'Dynamic client registration (RFC 7591) at /register: `open` (any client may register) or `disabled`.',
    default: 'open',
    schema: z.enum(['open', 'disabled']),
  },
  clientApproval: {
    env: 'GATEHOUSE_CLIENT_APPROVAL',
    description:
      '`manual`: every client that registers itself or arrives by metadata document waits for an administrator\'s approval. `automatic`: every new client is approved at once with no scope ceiling (personal or development use only).',
    default: 'manual',
    schema: z.enum(['manual', 'automatic']),
  },
  trustedDocumentHosts: {
    env: 'GATEHOUSE_TRUSTED_CLIENT_HOSTS',
    description:
      'Space- or comma-separated hosts (for example `claude.ai vscode.dev`) whose metadata-document clients are approved on arrival, with the ceiling GATEHOUSE_TRUSTED_CLIENT_CEILING. Empty by default.',
    default: '',
    schema: z
      .string()
      .transform((v) => v.split(/[\s,]+/).filter(Boolean).map((h) => h.toLowerCase()))
      .refine((hosts) => hosts.every((h) => /^[a-z0-9.-]+(:\d+)?$/.test(h)), 'must be host names such as claude.ai'),
  },
  trustedClientCeiling: {
    env: 'GATEHOUSE_TRUSTED_CLIENT_CEILING',
    description:
      'The scope ceiling of clients approved on arrival through GATEHOUSE_TRUSTED_CLIENT_HOSTS: `defaults` (each MCP server\'s default scopes) or `all` (every scope each MCP server offers).',
    default: 'defaults',
    schema: z.enum(['defaults', 'all']),
  },
  clientIdMetadataDocuments: {
    env: 'GATEHOUSE_CLIENT_ID_METADATA_DOCUMENTS',
    description:
      'Client ID Metadata Documents: `enabled` (a client may use an https URL naming its metadata document as its client_id; Gatehouse fetches it, guarded against SSRF, and caches it) or `disabled`.',
    default: 'enabled',
    schema: z.enum(['enabled', 'disabled']),
  },
  documentFetchesPerHost: {
    env: 'GATEHOUSE_CLIENT_METADATA_FETCHES_PER_HOST',
    description: 'At most this many client metadata documents are fetched from one host per minute, across all instances.',
    default: '30',
    schema: int(1, 10000),
  },
  auditSink: {
    env: 'GATEHOUSE_AUDIT_SINK',
    description:
      'Where audit events also stream as JSON lines for a SIEM: `off`, `stdout`, `stderr`, or a file path (appended). CLI commands stream their events too (to stderr when this is `stdout`, so their output stays parseable). Fields: docs/audit-events.md.',
    default: 'off',
    schema: z.string().min(1),
  },
  keyRotationInterval: {
    env: 'GATEHOUSE_KEY_ROTATION_INTERVAL',
    description: 'Rotate the signing key automatically when the active one is this old (0 turns scheduled rotation off; `gatehouse keys rotate` always works).',
    default: '90d',
    schema: duration(0, 3650 * DAY),
  },
  keyPublishLead: {
    env: 'GATEHOUSE_KEY_PUBLISH_LEAD',
    description: 'How long a new signing key is published in the JWKS before it signs, so resource servers that cache the JWKS know it first.',
    default: '10m',
    schema: duration(0, 7 * DAY),
  },
  registrationsPerHour: {
    env: 'GATEHOUSE_REGISTRATIONS_PER_HOUR',
    description: 'Dynamic registrations accepted from one address per hour, across all instances; more get 429 with Retry-After.',
    default: '30',
    schema: int(1, 100000),
  },
  tokenRequestsPerMinute: {
    env: 'GATEHOUSE_TOKEN_REQUESTS_PER_MINUTE',
    description:
      'Token requests (code exchanges and refreshes, refused ones included) accepted per client per minute, across all instances; more get 429 with Retry-After. One client_id may serve many users (a metadata-document client such as claude.ai is one client for the whole organisation): size it for the busiest.',
    default: '1200',
    schema: int(1, 1000000),
  },
  maxPendingClients: {
    env: 'GATEHOUSE_MAX_PENDING_CLIENTS',
    description: 'While this many clients wait for approval, new registrations get 503 (registration paused) until an administrator decides.',
    default: '1000',
    schema: int(1, 1000000),
  },
  pendingClientTtl: {
    env: 'GATEHOUSE_PENDING_CLIENT_TTL',
    description: 'A client that was never approved, rejected or suspended is deleted this long after it arrived (0 keeps them).',
    default: '30d',
    schema: duration(0, 3650 * DAY),
  },
  logLevel: {
    env: 'GATEHOUSE_LOG_LEVEL',
    description: 'Log level: fatal, error, warn, info, debug, trace or silent.',
    default: 'info',
    schema: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
  },
  accessTokenTtl: {
    env: 'GATEHOUSE_ACCESS_TOKEN_TTL',
    description: 'Default access-token lifetime for a newly added resource (each resource may set its own).',
    default: '10m',
    schema: duration(30, DAY),
  },
  authorizationCodeTtl: {
    env: 'GATEHOUSE_AUTHORIZATION_CODE_TTL',
    description: 'Lifetime of an authorization code.',
    default: '60s',
    schema: duration(10, 600),
  },
  refreshTokenIdleTtl: {
    env: 'GATEHOUSE_REFRESH_TOKEN_IDLE_TTL',
    description: 'A refresh token unused for this long expires. Each rotation starts the clock again.',
    default: '30d',
    schema: duration(60, 365 * DAY),
  },
  refreshTokenReuseGrace: {
    env: 'GATEHOUSE_REFRESH_TOKEN_REUSE_GRACE',
    description:
      'Rotation grace: for this long after a refresh, the same client may present the refresh token it has just rotated once more (it lost the answer: a timeout, a dropped connection, a crashed instance) and gets a new successor that replaces the undelivered one, as long as that successor was never used. Outside the window, from another client, a second time, or once the successor was used, it is reuse: the whole grant is revoked. 0 turns grace off (at most 300 s). See docs/security.md (I-32).',
    default: '60s',
    schema: duration(0, 300),
  },
  refreshTokenAbsoluteTtl: {
    env: 'GATEHOUSE_REFRESH_TOKEN_ABSOLUTE_TTL',
    description: 'No refresh-token chain outlives this, counted from the user\'s authorization; then the user signs in again.',
    default: '90d',
    schema: duration(60, 3 * 365 * DAY),
  },
  sessionTtl: {
    env: 'GATEHOUSE_SESSION_TTL',
    description: 'Browser sign-in session at Gatehouse. Tokens do not depend on it.',
    default: '12h',
    schema: duration(60, 30 * DAY),
  },
  interactionTtl: {
    env: 'GATEHOUSE_INTERACTION_TTL',
    description: 'Time a user has to finish sign-in and consent.',
    default: '10m',
    schema: duration(60, DAY),
  },
  sweepInterval: {
    env: 'GATEHOUSE_SWEEP_INTERVAL',
    description:
      'How often the janitor runs in the server: it deletes expired tokens, codes, sessions and interactions, and stale pending clients. With many instances one runs it at a time (a PostgreSQL advisory lock). 0 turns the schedule off (run `gatehouse janitor` from cron instead).',
    default: '5m',
    schema: duration(0, DAY),
  },
  auditSealInterval: {
    env: 'GATEHOUSE_AUDIT_SEAL_INTERVAL',
    description:
      'How often the server seals committed audit events into a signed checkpoint (docs/audit-events.md), one instance at a time (a PostgreSQL advisory lock). A server also seals when it stops, and a CLI command after it records events. A transaction left open holds sealing back until it ends. `gatehouse audit verify` reports events unsealed for more than five intervals (at least a minute).',
    default: '10s',
    schema: duration(1, 3600),
  },
  shutdownTimeout: {
    env: 'GATEHOUSE_SHUTDOWN_TIMEOUT',
    description:
      'On SIGTERM or SIGINT the server stops accepting connections and lets requests in flight finish for at most this long, then closes what is left and exits. Keep it below the orchestrator\'s grace period (Docker: 10s, Kubernetes: 30s).',
    default: '8s',
    schema: duration(0, 600),
  },
  keyCheckInterval: {
    env: 'GATEHOUSE_KEY_CHECK_INTERVAL',
    description:
      'How often each instance looks for signing-key changes made by another instance or the CLI (and for a due rotation). Keep it well below GATEHOUSE_KEY_PUBLISH_LEAD, so every instance publishes a new key before it signs.',
    default: '30s',
    schema: duration(1, 3600),
  },
} satisfies Record<string, Setting>;

type Settings = typeof settings;
type Raw = { [K in keyof Settings]: z.output<Settings[K]['schema']> };

export interface Config extends Omit<Raw, 'issuer' | 'databaseUrl' | 'keyEncryptionKey' | 'previousKeyEncryptionKeys' | 'adminUrl' | 'tlsCertFile' | 'tlsKeyFile' | 'migrateOnStart'> {
  /** Unset: true for the embedded database, false with DATABASE_URL. */
  migrateOnStart: boolean;
  issuer: string;
  /** Native TLS for both listeners, when configured. */
  tls: { certFile: string; keyFile: string } | undefined;
  /** The admin console's origin (scheme, host and port). */
  adminUrl: string;
  databaseUrl: string | undefined;
  /** 32 bytes, or undefined when the development key is in use. */
  keyEncryptionKey: Buffer | undefined;
  /** Old key-encryption keys (32 bytes each), for decryption only while `gatehouse keys rewrap` is pending; usually empty. */
  previousKeyEncryptionKeys: Buffer[];
  /** Problems that do not stop start-up outside production, worth a loud warning. */
  warnings: string[];
}

export class ConfigError extends Error {
  constructor(public readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

export function isLoopbackHost(hostname: string): boolean {
  return LOOPBACK_HOSTS.has(hostname.toLowerCase());
}

/**
 * Parses the environment into a {@link Config}. Fails with a {@link ConfigError} listing every
 * problem at once.
 */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const problems: string[] = [];
  const warnings: string[] = [];
  const out: Record<string, unknown> = {};
  const failed = new Set<string>();

  for (const [key, setting] of Object.entries(settings) as [keyof Settings, Setting][]) {
    const raw = env[setting.env];
    const value = raw === undefined || raw === '' ? setting.default : raw;
    if (value === undefined) {
      out[key] = undefined;
      continue;
    }
    const parsed = setting.schema.safeParse(value);
    if (parsed.success) out[key] = parsed.data;
    else {
      failed.add(key);
      problems.push(`${setting.env}: ${parsed.error.issues.map((i) => i.message).join('; ')} (got "${redact(setting.env, value)}")`);
    }
  }

  const production = out.production === true;
  const port = typeof out.port === 'number' ? out.port : 4000;
  const issuer = typeof out.issuer === 'string' ? out.issuer : `http://localhost:${port}`;
  const issuerProblem = checkIssuer(issuer, production);
  if (issuerProblem) problems.push(`GATEHOUSE_ISSUER: ${issuerProblem} (got "${issuer}")`);
  else if (!production && new URL(issuer).protocol === 'http:' && !isLoopbackHost(new URL(issuer).hostname)) {
    warnings.push(`GATEHOUSE_ISSUER is http on a non-loopback host (${issuer}); this is refused in production.`);
  }

  const tls =
    typeof out.tlsCertFile === 'string' && typeof out.tlsKeyFile === 'string'
      ? { certFile: out.tlsCertFile, keyFile: out.tlsKeyFile }
      : undefined;
  if ((out.tlsCertFile === undefined) !== (out.tlsKeyFile === undefined)) {
    problems.push('GATEHOUSE_TLS_CERT_FILE and GATEHOUSE_TLS_KEY_FILE: set both or neither');
  }
  if (!issuerProblem) {
    const issuerIsHttps = new URL(issuer).protocol === 'https:';
    if (tls && !issuerIsHttps) {
      problems.push(`GATEHOUSE_ISSUER: must be https when GATEHOUSE_TLS_CERT_FILE is set (got "${issuer}")`);
    }
    // An https issuer served over plain http to a proxy that is not trusted: cookies would lose
    // Secure and the __Host- prefix would make browsers drop them. RFC 9700 §4.x / OAuth 2.1 §1.5.
    if (issuerIsHttps && !tls && out.trustProxy !== true) {
      const why = 'the issuer is https, so either Gatehouse serves TLS (GATEHOUSE_TLS_CERT_FILE and GATEHOUSE_TLS_KEY_FILE) or a TLS-terminating proxy does (GATEHOUSE_TRUST_PROXY=true)';
      if (production) problems.push(`GATEHOUSE_TRUST_PROXY: ${why}`);
      else warnings.push(`GATEHOUSE_TRUST_PROXY is off and no TLS certificate is set, but ${why}.`);
    }
  }

  const adminPort = typeof out.adminPort === 'number' ? out.adminPort : 4001;
  const adminUrl =
    typeof out.adminUrl === 'string' ? out.adminUrl.replace(/\/$/, '') : `${tls ? 'https' : 'http'}://localhost:${adminPort}`;
  const adminUrlParsed = URL.parse(adminUrl);
  if (!adminUrlParsed || !['http:', 'https:'].includes(adminUrlParsed.protocol) || adminUrlParsed.origin !== adminUrl) {
    problems.push(`GATEHOUSE_ADMIN_URL: must be an http(s) origin without a path, such as https://admin.auth.example.com (got "${adminUrl}")`);
  } else if (tls && adminUrlParsed.protocol !== 'https:') {
    problems.push(`GATEHOUSE_ADMIN_URL: must be https when GATEHOUSE_TLS_CERT_FILE is set, since the admin listener serves TLS too (got "${adminUrl}")`);
  }

  if (production && out.keyEncryptionKey === undefined && !failed.has('keyEncryptionKey')) {
    problems.push('GATEHOUSE_KEY_ENCRYPTION_KEY: required in production: generate one with `openssl rand -hex 32`');
  }
  const previousKeys = Array.isArray(out.previousKeyEncryptionKeys) ? (out.previousKeyEncryptionKeys as string[]) : [];
  if (previousKeys.length && out.keyEncryptionKey === undefined && !failed.has('keyEncryptionKey')) {
    problems.push(
      'GATEHOUSE_PREVIOUS_KEY_ENCRYPTION_KEYS: set only together with GATEHOUSE_KEY_ENCRYPTION_KEY (the new key); previous keys only decrypt, so nothing could be encrypted',
    );
  }
  if (typeof out.keyEncryptionKey === 'string' && previousKeys.includes(out.keyEncryptionKey.toLowerCase())) {
    problems.push('GATEHOUSE_PREVIOUS_KEY_ENCRYPTION_KEYS: must not contain the current GATEHOUSE_KEY_ENCRYPTION_KEY (list only the keys being replaced)');
  }
  if (production && out.databaseUrl === undefined) {
    problems.push('DATABASE_URL: required in production; the embedded database is for trying Gatehouse out');
  }
  if (
    typeof out.refreshTokenIdleTtl === 'number' &&
    typeof out.refreshTokenAbsoluteTtl === 'number' &&
    out.refreshTokenIdleTtl > out.refreshTokenAbsoluteTtl
  ) {
    problems.push('GATEHOUSE_REFRESH_TOKEN_IDLE_TTL: must not be longer than GATEHOUSE_REFRESH_TOKEN_ABSOLUTE_TTL');
  }

  if (problems.length) throw new ConfigError(problems);
  if (out.keyEncryptionKey === undefined) {
    warnings.push(
      'GATEHOUSE_KEY_ENCRYPTION_KEY is not set: private keys are encrypted under a DEVELOPMENT key that is public. Never use this outside development.',
    );
  }

  warnings.push(...policyWarnings(out as Raw));

  const { tlsCertFile: _cert, tlsKeyFile: _key, ...rest } = out as Raw;
  return {
    ...rest,
    issuer,
    adminUrl,
    tls,
    databaseUrl: out.databaseUrl as string | undefined,
    migrateOnStart: typeof out.migrateOnStart === 'boolean' ? out.migrateOnStart : out.databaseUrl === undefined,
    keyEncryptionKey:
      typeof out.keyEncryptionKey === 'string' ? Buffer.from(out.keyEncryptionKey, 'hex') : undefined,
    previousKeyEncryptionKeys: previousKeys.map((k) => Buffer.from(k, 'hex')),
    warnings,
  };
}

/** RFC 8414 §2: the issuer is an https URL with no query or fragment. We also refuse a path (see DESIGN). */
function checkIssuer(issuer: string, production: boolean): string | undefined {
  const url = URL.parse(issuer);
  if (!url) return 'must be an absolute URL such as https://auth.example.com';
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return 'must be an https URL';
  if (url.search || url.hash || issuer.includes('#') || issuer.includes('?')) return 'must not have a query or fragment';
  if (url.username || url.password) return 'must not contain credentials';
  if (url.pathname !== '/' || issuer.endsWith('/')) return 'must not have a path or a trailing slash';
  if (url.protocol === 'http:' && production && !isLoopbackHost(url.hostname)) {
    return 'must be https in production (only localhost may use http)';
  }
  return undefined;
}

function redact(envName: string, value: string): string {
  return /KEY|SECRET|PASSWORD|URL/.test(envName) ? '…' : value;
}

/**
 * Settings that turn a safe default off. They are allowed, and each is logged and recorded as a
 * `config.warning` audit event at every start, so the trail shows when a weaker policy was in force.
 */
function policyWarnings(c: Raw): string[] {
  const out: string[] = [];
  if (c.clientApproval === 'automatic') {
    out.push('GATEHOUSE_CLIENT_APPROVAL=automatic: every new client is approved on arrival with no scope ceiling (personal or development use only).');
  }
  if (c.trustedDocumentHosts.length) {
    out.push(
      `GATEHOUSE_TRUSTED_CLIENT_HOSTS: metadata-document clients from ${c.trustedDocumentHosts.join(', ')} are approved on arrival with the "${c.trustedClientCeiling}" ceiling.`,
    );
  }
  if (c.keyRotationInterval === 0) out.push('GATEHOUSE_KEY_ROTATION_INTERVAL=0: scheduled signing-key rotation is off.');
  if (c.pendingClientTtl === 0) out.push('GATEHOUSE_PENDING_CLIENT_TTL=0: clients that are never approved are kept forever.');
  if (c.previousKeyEncryptionKeys?.length) {
    out.push(
      `GATEHOUSE_PREVIOUS_KEY_ENCRYPTION_KEYS is set: ${c.previousKeyEncryptionKeys.length} old key-encryption key(s) can still decrypt stored secrets; remove it once \`gatehouse keys rewrap\` has run.`,
    );
  }
  return out;
}
