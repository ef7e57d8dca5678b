/**
 * Prometheus metrics (issue 7 §2), served by the admin listener at `GET /metrics`.
 *
 * One {@link Metrics} object per process: it owns its own prom-client `Registry` (never the global
 * default one, so that several apps in one process, as in the test suite, do not share counters),
 * and every rebuild of the app (a key rotation rebuilds it) is handed the same object, so counters
 * do not reset.
 *
 * What it does *not* do: it never touches the database on a request path. Request counts and
 * latencies are recorded in memory; token counters are bumped after the request's writes commit;
 * the pending-clients count and the pool figures are read only when Prometheus scrapes.
 *
 * Label values are bounded and never secret: a route label is a route *template*
 * (`/interaction/:uid`, `/token`), a fixed path the app serves itself, or `unmatched` — never the
 * raw URL, which may carry client ids, interaction uids, codes or tokens.
 */
import type { Context, Middleware, Next } from 'koa';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { AuditMetrics } from '../audit/sealer.ts';
import type { PoolStats } from '../db/database.ts';

export const METRICS_PREFIX = 'gatehouse_';

/** Which listener answered. */
export type Listener = 'public' | 'admin';

/** The route label of a request no route template or fixed path claims (random paths, 404s). */
export const UNMATCHED_ROUTE = 'unmatched';

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);
/** The only grant types Gatehouse issues tokens for (oidc/profile.ts); anything else is `other`. */
const GRANT_TYPES = new Set(['authorization_code', 'refresh_token', 'client_credentials']);
/** Seconds: from a cached JWKS answer (~1 ms) to an argon2id sign-in (~100 ms+) and beyond. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** A scrape never waits longer than this for the pending-clients count. */
const COUNT_TIMEOUT_MS = 1000;

export interface MetricsSources {
  /** The PostgreSQL pool's use (DatabaseHandle.poolStats); absent for the embedded database, and then no pool metrics. */
  poolStats?: (() => PoolStats) | undefined;
  /** Clients waiting for an administrator's approval; read at scrape time only. */
  pendingClients?: (() => Promise<number>) | undefined;
  /** Node.js process metrics (CPU, memory, event loop, GC) under the `gatehouse_` prefix. Default true. */
  processMetrics?: boolean;
}

/** What oidc/profile.ts reports: called once per committed outcome, next to its audit event. */
export interface TokenMetrics {
  /** A token response (`token.issued` / `token.refreshed`). */
  tokenIssued(grantType: unknown): void;
  /** A replayed refresh token or authorization code revoked its grant (`token.reuse_detected`). */
  reuseDetected(grantType: unknown): void;
  /** A client presented the refresh token it had just rotated, within the grace window (`token.refreshed_within_grace`). */
  graceRefresh(): void;
}

function grantLabel(grantType: unknown): string {
  return typeof grantType === 'string' && GRANT_TYPES.has(grantType) ? grantType : 'other';
}

interface RouterLayer {
  path: unknown;
  methods: string[];
}

function label(path: unknown): string | undefined {
  if (typeof path === 'string' && path) return path;
  if (path instanceof RegExp) return String(path);
  return undefined;
}

/**
 * The template of the route that matched, e.g. '/interaction/:uid'. @koa/router lists the layers
 * whose path matched in `ctx.matched`: the route for this method (else, for its 405, any route of
 * that path) names the request even when a router-level middleware answered first (the admin API's
 * sign-in check), whose own "path" is a pattern like '/api/v1(?:\/|$)'. oidc-provider's router sets
 * only `_matchedRoute`.
 */
function routeTemplate(ctx: Context): string | undefined {
  const c = ctx as unknown as { matched?: RouterLayer[]; _matchedRoute?: unknown };
  const routes = c.matched?.filter((layer) => Array.isArray(layer.methods) && layer.methods.length > 0) ?? [];
  const layer = routes.findLast((l) => l.methods.includes(ctx.method)) ?? routes.at(-1);
  return label(layer?.path) ?? label(c._matchedRoute);
}

export function createMetrics(sources: MetricsSources = {}) {
  const registry = new Registry();
  if (sources.processMetrics !== false) collectDefaultMetrics({ register: registry, prefix: METRICS_PREFIX });

  const requests = new Counter({
    name: `${METRICS_PREFIX}http_requests_total`,
    help: 'HTTP requests answered, by listener, route template, method and status code.',
    labelNames: ['listener', 'route', 'method', 'status'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: `${METRICS_PREFIX}http_request_duration_seconds`,
    help: 'Time from receiving a request to handing its response over, by listener, route template and method.',
    labelNames: ['listener', 'route', 'method'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const tokensIssued = new Counter({
    name: `${METRICS_PREFIX}tokens_issued_total`,
    help: 'Successful token responses, by grant type (counted once their writes commit, with the token.issued / token.refreshed audit events).',
    labelNames: ['grant_type'] as const,
    registers: [registry],
  });
  const tokensRefreshed = new Counter({
    name: `${METRICS_PREFIX}tokens_refreshed_total`,
    help: 'Successful refresh-token grants (each rotates the refresh token).',
    registers: [registry],
  });
  const reuse = new Counter({
    name: `${METRICS_PREFIX}token_reuse_detected_total`,
    help: 'Replayed refresh tokens or authorization codes; each revoked its whole grant.',
    labelNames: ['grant_type'] as const,
    registers: [registry],
  });
  const grace = new Counter({
    name: `${METRICS_PREFIX}refresh_grace_used_total`,
    help: 'Refreshes that presented the just-rotated refresh token again within GATEHOUSE_REFRESH_TOKEN_REUSE_GRACE (a lost answer, a retry after a timeout or a crash) and got a successor that replaced the undelivered one.',
    registers: [registry],
  });
  // Start both series at 0, so that rate() and alerts work before the first event.
  for (const grantType of ['authorization_code', 'refresh_token']) {
    tokensIssued.inc({ grant_type: grantType }, 0);
    reuse.inc({ grant_type: grantType }, 0);
  }

  const checkpoints = new Counter({
    name: `${METRICS_PREFIX}audit_checkpoints_total`,
    help: 'Audit checkpoints this instance sealed and signed (src/audit/sealer.ts).',
    registers: [registry],
  });
  const sealedRows = new Counter({
    name: `${METRICS_PREFIX}audit_events_sealed_total`,
    help: 'Audit events this instance sealed into checkpoints.',
    registers: [registry],
  });
  const forgedRows = new Counter({
    name: `${METRICS_PREFIX}audit_forged_events_total`,
    help: 'Audit events sealed without a valid MAC: rows Gatehouse did not write (inserted with the database\'s credentials). Alert on any increase.',
    registers: [registry],
  });
  const sealFailures = new Counter({
    name: `${METRICS_PREFIX}audit_seal_failures_total`,
    help: 'Sealing rounds that failed or were refused (the database away, or the last checkpoint not verifying: see the log).',
    registers: [registry],
  });
  for (const counter of [checkpoints, sealedRows, forgedRows, sealFailures]) counter.inc(0);
  const audit: AuditMetrics = {
    sealed(rows) {
      checkpoints.inc();
      sealedRows.inc(rows);
    },
    invalidRows(count) {
      forgedRows.inc(count);
    },
    failed() {
      sealFailures.inc();
    },
  };

  // Before the pending-clients count, whose own query would otherwise show up as waiting or in use.
  if (sources.poolStats) {
    const stats = sources.poolStats;
    new Gauge({
      name: `${METRICS_PREFIX}db_pool_connections`,
      help: 'PostgreSQL pool connections, by state: idle, or in_use (lent to a request).',
      labelNames: ['state'] as const,
      registers: [registry],
      collect() {
        const s = stats();
        this.set({ state: 'idle' }, s.idle);
        this.set({ state: 'in_use' }, Math.max(0, s.total - s.idle));
      },
    });
    new Gauge({
      name: `${METRICS_PREFIX}db_pool_waiting`,
      help: 'Requests queued for a PostgreSQL pool connection (above 0 for long: raise GATEHOUSE_DATABASE_POOL_SIZE or find the slow query).',
      registers: [registry],
      collect() {
        this.set(stats().waiting);
      },
    });
    new Gauge({
      name: `${METRICS_PREFIX}db_pool_max`,
      help: 'The PostgreSQL pool\'s size limit.',
      registers: [registry],
      collect() {
        this.set(stats().max);
      },
    });
  }

  if (sources.pendingClients) {
    const count = sources.pendingClients;
    new Gauge({
      name: `${METRICS_PREFIX}clients_pending`,
      help: 'Clients waiting for an administrator\'s approval (counted at scrape time; the last known value while the database is unreachable).',
      registers: [registry],
      async collect() {
        let timer: NodeJS.Timeout | undefined;
        try {
          const n = await Promise.race([
            count(),
            new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('timed out')), COUNT_TIMEOUT_MS))),
          ]);
          this.set(n);
        } catch {
          // The scrape still succeeds: the gauge keeps its last value (and /readyz says the database is away).
        } finally {
          clearTimeout(timer);
        }
      },
    });
  }

  /** Routes matched inside a mounted app that answers on its own (oidc-provider), by request. */
  const innerRoutes = new WeakMap<object, string>();

  const tokens: TokenMetrics = {
    tokenIssued(grantType) {
      const label = grantLabel(grantType);
      tokensIssued.inc({ grant_type: label });
      if (label === 'refresh_token') tokensRefreshed.inc();
    },
    reuseDetected(grantType) {
      reuse.inc({ grant_type: grantLabel(grantType) });
    },
    graceRefresh() {
      grace.inc();
    },
  };

  return {
    registry,
    tokens,
    /** For the audit sealer. */
    audit,

    /**
     * Counts and times every request of a listener. Mount it first. `fixedPaths` are exact paths
     * the app answers without a router (probes, the stylesheet, or an endpoint's refusal before
     * routing, e.g. a rate-limited `/token`): they are their own route label.
     */
    requestMetrics(listener: Listener, fixedPaths: readonly string[] = []): Middleware {
      const fixed = new Set(fixedPaths);
      return async function requestMetrics(ctx: Context, next: Next): Promise<void> {
        const started = process.hrtime.bigint();
        let status: number | undefined;
        try {
          await next();
        } catch (err) {
          status = typeof (err as { status?: unknown }).status === 'number' ? (err as { status: number }).status : 500;
          throw err;
        } finally {
          const route = innerRoutes.get(ctx.req) ?? routeTemplate(ctx) ?? (fixed.has(ctx.path) ? ctx.path : UNMATCHED_ROUTE);
          const method = METHODS.has(ctx.method) ? ctx.method : 'OTHER';
          // ctx.status reads the response's status code, also when a mounted app answered it (ctx.respond = false).
          requests.inc({ listener, route, method, status: String(status ?? ctx.status) });
          duration.observe({ listener, route, method }, Number(process.hrtime.bigint() - started) / 1e9);
        }
      };
    },

    /**
     * For a mounted Koa app with its own router and context (oidc-provider: `provider.use(...)`):
     * hands the route template it matched to {@link requestMetrics} of the outer app.
     */
    innerRoute: async function innerRoute(ctx: Context, next: Next): Promise<void> {
      try {
        await next();
      } finally {
        const route = routeTemplate(ctx);
        if (route) innerRoutes.set(ctx.req, route);
      }
    } as Middleware,

    /**
     * `GET /metrics` in Prometheus' text format. No sign-in: mount it only on the admin listener,
     * which is meant to be reachable from the operator's network only.
     */
    endpoint(path = '/metrics'): Middleware {
      return async function metricsEndpoint(ctx: Context, next: Next): Promise<void> {
        if (ctx.path !== path) return next();
        if (ctx.method !== 'GET' && ctx.method !== 'HEAD') {
          ctx.status = 405;
          ctx.set('Allow', 'GET, HEAD');
          return;
        }
        const text = await registry.metrics();
        ctx.set('Cache-Control', 'no-store');
        ctx.body = text;
        ctx.set('Content-Type', registry.contentType);
      };
    },
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
