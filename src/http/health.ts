/**
 * Probes for load balancers and orchestrators (issue 7 §2), on the public listener:
 * - `GET /healthz`: the process is alive and serving HTTP. Never touches the database, so a
 *   database outage does not get healthy instances restarted.
 * - `GET /readyz`: this instance can do its work: the database answers (within 2 s), its schema has
 *   every migration this version needs, and signing keys are loaded. 503 with the failing checks
 *   otherwise, so the load balancer sends traffic elsewhere.
 *   A schema *newer* than this version (migrations it does not know) is reported but does not fail
 *   readiness: during a rolling upgrade the new version's `gatehouse migrate` runs first, and the
 *   instances of the previous version must keep serving until they are replaced (migrations are
 *   additive; docs/deployment.md). Such an instance would refuse to start again (ensureSchema).
 * Both are `no-store` and say nothing secret: check names and short reasons only.
 */
import type { Context, Next } from 'koa';
import { sql } from 'kysely';
import type { DB } from '../db/database.ts';
import { schemaStatus } from '../db/migrator.ts';

const DATABASE_TIMEOUT_MS = 2000;

type Check = { ok: true; note?: string } | { ok: false; reason: string };

async function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([work, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

export function healthRoutes(deps: { db: DB; signingKeys: () => number }) {
  async function readiness(): Promise<Record<string, Check>> {
    const checks: Record<string, Check> = {};
    try {
      await withTimeout(sql`SELECT 1`.execute(deps.db), DATABASE_TIMEOUT_MS, 'the database');
      checks.database = { ok: true };
      const schema = await withTimeout(schemaStatus(deps.db), DATABASE_TIMEOUT_MS, 'the database');
      checks.migrations = schema.pending.length
        ? { ok: false, reason: `pending migrations (${schema.pending.join(', ')}): run \`gatehouse migrate\`` }
        : schema.unknown.length
          ? { ok: true, note: `ok, but the database has migrations this version does not know (${schema.unknown.join(', ')}): finish upgrading this instance` }
          : { ok: true };
    } catch {
      checks.database = { ok: false, reason: 'unreachable' };
      checks.migrations = { ok: false, reason: 'unknown: the database is unreachable' };
    }
    checks.keys = deps.signingKeys() > 0 ? { ok: true } : { ok: false, reason: 'no signing key loaded' };
    return checks;
  }

  return async function health(ctx: Context, next: Next): Promise<void> {
    if (ctx.path !== '/healthz' && ctx.path !== '/readyz') return next();
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') {
      ctx.status = 405;
      ctx.set('Allow', 'GET, HEAD');
      return;
    }
    ctx.set('Cache-Control', 'no-store');
    if (ctx.path === '/healthz') {
      ctx.body = { status: 'ok' };
      return;
    }
    const checks = await readiness();
    const ready = Object.values(checks).every((c) => c.ok);
    ctx.status = ready ? 200 : 503;
    ctx.body = {
      status: ready ? 'ready' : 'not_ready',
      checks: Object.fromEntries(Object.entries(checks).map(([name, c]) => [name, c.ok ? (c.note ?? 'ok') : c.reason])),
    };
  };
}
