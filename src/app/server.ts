/**
 * Starts Gatehouse: open the database, check (or, when asked, migrate) its schema, load keys,
 * listen, run the janitor and the audit sealer on a schedule, and drain within a bound on stop
 * (SIGTERM/SIGINT in the CLI), sealing once more before the pool closes.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Logger } from 'pino';
import type { Config } from '../config/config.ts';
import { openDatabase, type DatabaseHandle } from '../db/database.ts';
import { ensureSchema } from '../db/migrator.ts';
import { createKeysService, type KeyMaterial } from '../keys/keys.service.ts';
import { rotateSigningKeyIfDue } from '../keys/rotation.ts';
import { createSecretBox } from '../keys/secret-box.ts';
import { createAuditSink } from '../audit/audit-sink.ts';
import { describeSealOutcome } from '../audit/sealer.ts';
import { buildApp, createAppMetrics, createAppSealer } from './deps.ts';
import { describeJanitorReport, runJanitor } from './janitor.ts';
import { createListener, loadTlsMaterial, reloadTlsIfChanged } from './tls.ts';

export interface RunningServer {
  server: Server;
  url: string;
  adminServer: Server;
  adminUrl: string;
  database: DatabaseHandle;
  /**
   * Graceful stop: refuse new connections, answer /readyz with 503 and `Connection: close` on
   * kept-alive connections, let requests in flight finish for at most GATEHOUSE_SHUTDOWN_TIMEOUT,
   * then cut what is left, close the pool and resolve. Resolves `{ forced }` — whether connections
   * had to be cut.
   */
  stop(): Promise<{ forced: boolean }>;
}

export async function startServer(config: Config, logger: Logger): Promise<RunningServer> {
  for (const warning of config.warnings) logger.warn({ event: 'config.warning' }, warning);

  const database = await openDatabase({
    url: config.databaseUrl,
    dataDir: config.dataDir,
    poolSize: config.databasePoolSize,
    timeoutMs: config.databaseTimeout * 1000,
  });
  try {
    // Refuses a schema older (unless migrating) or newer than this version's, with what to do.
    const applied = await ensureSchema(database.db, { migrate: config.migrateOnStart });
    if (applied.length) logger.info({ event: 'db.migrated', applied }, `applied ${applied.length} migration(s)`);

    const tls = config.tls ? await loadTlsMaterial(config.tls) : undefined;
    // One sink for the life of the process, shared by every rebuild of the app.
    const auditSink = createAuditSink(config.auditSink);
    // One metrics registry for the life of the process too: counters survive a key-rotation rebuild.
    const metrics = createAppMetrics(database);
    // And one sealer: its rounds (scheduled, and the last one at stop) never overlap.
    const sealer = createAppSealer(config, database, { logger, sink: auditSink, metrics });
    const build = () => buildApp(config, database, logger, { auditSink, metrics, sealer });
    let built = await build();
    // Settings that weaken a safe default are in the audit trail for as long as they are in force.
    for (const warning of config.warnings) {
      await built.audit.record({ event: 'config.warning', actor: 'gatehouse', details: { message: warning } });
    }
    let handle = built.app.callback();
    let handleAdmin = built.adminApp.callback();
    // While draining, kept-alive connections are told to close after their response, and /readyz
    // says so, so a load balancer that still holds a connection moves on.
    let draining = false;
    const drainAware = (next: () => (req: IncomingMessage, res: ServerResponse) => void) => (req: IncomingMessage, res: ServerResponse) => {
      if (draining && (req.url === '/readyz' || req.url?.startsWith('/readyz?'))) {
        res.writeHead(503, { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store', Connection: 'close' });
        res.end(JSON.stringify({ status: 'not_ready', checks: { lifecycle: 'shutting down' } }));
        return;
      }
      // Decided when the headers go out (every response passes through writeHead), so a request
      // that arrived before the drain began still closes its connection after answering.
      const writeHead = res.writeHead;
      res.writeHead = function (this: ServerResponse, ...args: Parameters<ServerResponse['writeHead']>) {
        if (draining && !this.headersSent) this.setHeader('Connection', 'close');
        return writeHead.apply(this, args);
      } as ServerResponse['writeHead'];
      next()(req, res);
    };
    const server = createListener(drainAware(() => handle), tls);
    server.keepAliveTimeout = 65_000;
    const adminServer = createListener(drainAware(() => handleAdmin), tls);
    const keysService = createKeysService({ db: database.db, secretBox: createSecretBox(config.keyEncryptionKey, config.previousKeyEncryptionKeys) });
    const fingerprint = (keys: KeyMaterial) => `${keys.signing.map((k) => k.kid).join(',')}|${keys.cookies.length}`;
    let loadedKeys = fingerprint(built.keys);
    const listen = (s: Server, port: number, host: string) =>
      new Promise<number>((resolve, reject) => {
        s.once('error', reject);
        s.listen(port, host, () => {
          const address = s.address();
          resolve(typeof address === 'object' && address ? address.port : port);
        });
      });
    const port = await listen(server, config.port, config.host);
    let adminPort: number;
    try {
      adminPort = await listen(adminServer, config.adminPort, config.adminHost);
    } catch (err) {
      server.close();
      throw err;
    }
    const urlOf = (host: string, p: number) => `${tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${p}`;

    // Housekeeping in every instance; the janitor's advisory lock lets one run at a time.
    let sweeping: Promise<unknown> = Promise.resolve();
    const sweeper =
      config.sweepInterval > 0
        ? setInterval(() => {
            sweeping = runJanitor({ db: database.db, databaseUrl: config.databaseUrl, clients: built.clients, pendingClientTtl: config.pendingClientTtl })
              .then((outcome) => {
                if (!outcome.ran) return logger.debug({ event: 'janitor.skipped' }, 'janitor: another instance is running it');
                const { report } = outcome;
                const level = report.total || report.expiredClients.length ? 'info' : 'debug';
                logger[level]({ event: 'janitor.ran', deleted: report.total, payloads: report.payloads, expiredClients: report.expiredClients.length, ms: report.durationMs }, describeJanitorReport(report));
              })
              .catch((err: unknown) => logger.warn({ err }, 'janitor failed; it runs again next interval'));
          }, config.sweepInterval * 1000)
        : undefined;
    sweeper?.unref();

    // The audit sealer in every instance; its advisory lock lets one seal at a time (src/audit/sealer.ts).
    let sealing: Promise<unknown> = Promise.resolve();
    const sealRound = () =>
      (sealing = sealer
        .seal()
        .then((outcome) => {
          if (outcome.ran && outcome.checkpoints.length) {
            const level = outcome.invalid.length ? 'error' : 'debug';
            logger[level]({ event: 'audit.sealed', rows: outcome.rows, checkpoints: outcome.checkpoints.length, invalid: outcome.invalid.map(String) }, describeSealOutcome(outcome));
          }
        })
        .catch((err: unknown) => logger.warn({ err, event: 'audit.seal_failed' }, 'sealing the audit trail failed; it is tried again next interval')));
    const sealTimer = setInterval(sealRound, config.auditSealInterval * 1000);
    sealTimer.unref();
    // Now too: the start-up's own events (config warnings), and whatever the last instance left.
    sealRound();

    // Keys: rotate on schedule, and pick up rotations (by any instance or the CLI) without a
    // restart — a new key starts signing at its activation time, a retired one leaves the JWKS.
    let keyCheck: Promise<unknown> = Promise.resolve();
    const keyWatcher = setInterval(() => {
      keyCheck = (async () => {
        if (config.tls && tls) await reloadTlsIfChanged(config.tls, tls, [server, adminServer] as HttpsServer[], logger);
        if (config.keyRotationInterval > 0) {
          const status = await keysService.rotationStatus();
          if (status.activeAgeSeconds >= config.keyRotationInterval && !status.scheduled) {
            const rotated = await rotateSigningKeyIfDue(
              { keys: keysService, resources: built.resources, audit: built.audit },
              { leadSeconds: config.keyPublishLead, defaultTokenTtl: config.accessTokenTtl, actor: 'gatehouse', intervalSeconds: config.keyRotationInterval },
            );
            if (rotated) logger.info({ event: 'keys.rotated', kid: rotated.kid }, 'scheduled signing-key rotation');
          }
        }
        const current = fingerprint(await keysService.load());
        if (current !== loadedKeys) {
          built = await build();
          handle = built.app.callback();
          handleAdmin = built.adminApp.callback();
          loadedKeys = fingerprint(built.keys);
          logger.info({ event: 'keys.reloaded', signing: built.keys.signing.map((k) => k.kid) }, 'keys changed: reloaded');
        }
      })().catch((err: unknown) => logger.warn({ err }, 'checking keys failed'));
    }, config.keyCheckInterval * 1000);
    keyWatcher.unref();

    return {
      server,
      url: urlOf(config.host, port),
      adminServer,
      adminUrl: urlOf(config.adminHost, adminPort),
      database,
      async stop() {
        draining = true;
        // Requests still running at the bound are cut without an answer: none of them may commit
        // after that (src/db/database.ts, "No late commits").
        database.giveUpAt?.(performance.now() + config.shutdownTimeout * 1000);
        if (sweeper) clearInterval(sweeper);
        clearInterval(sealTimer);
        clearInterval(keyWatcher);
        const servers = [server, adminServer];
        const closed = Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
        // close() stops accepting; idle kept-alive connections are closed now, and busy ones as
        // soon as their response is done (Connection: close above, and this poll for the rest).
        for (const s of servers) s.closeIdleConnections();
        const idlePoll = setInterval(() => servers.forEach((s) => s.closeIdleConnections()), 50);
        let forced = false;
        let deadline: NodeJS.Timeout | undefined;
        await Promise.race([
          closed,
          new Promise<void>((resolve) => {
            deadline = setTimeout(() => {
              forced = true;
              resolve();
            }, config.shutdownTimeout * 1000);
          }),
        ]);
        clearInterval(idlePoll);
        clearTimeout(deadline);
        if (forced) {
          logger.warn({ event: 'server.drain_timeout', timeoutSeconds: config.shutdownTimeout }, 'requests still in flight at the shutdown bound: closing their connections');
          for (const s of servers) s.closeAllConnections();
          await closed;
        }
        // Background work gets a short, bounded moment to finish its current statement.
        await Promise.race([Promise.allSettled([keyCheck, sweeping, sealing]), new Promise((resolve) => setTimeout(resolve, 1000).unref())]);
        // Seal what the last requests wrote, so that a stopped system leaves no events unsealed
        // (bounded: with the database away, stopping does not wait for it).
        await Promise.race([sealRound(), new Promise((resolve) => setTimeout(resolve, 3000).unref())]);
        await auditSink?.close();
        // Closing the pool waits for connections still lent out (a request cut at the bound may
        // hold one); that wait is bounded too, so stop() always resolves.
        const poolClosed = await Promise.race([database.close().then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 2000).unref())]);
        if (!poolClosed) logger.warn({ event: 'server.pool_close_timeout' }, 'database connections still busy at exit');
        return { forced };
      },
    };
  } catch (err) {
    await database.close();
    throw err;
  }
}
