/**
 * Starts Gatehouse: open the database, migrate when configured, load keys, listen, sweep expired
 * rows, and drain on SIGTERM/SIGINT.
 */
import type { Server } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Logger } from 'pino';
import type { Config } from '../config/config.ts';
import { openDatabase, type DatabaseHandle } from '../db/database.ts';
import { migrateToLatest, pendingMigrations } from '../db/migrator.ts';
import { sweepExpired } from '../oidc/adapter.ts';
import { createKeysService, type KeyMaterial } from '../keys/keys.service.ts';
import { rotateSigningKey } from '../keys/rotation.ts';
import { createSecretBox } from '../keys/secret-box.ts';
import { createAuditSink } from '../audit/audit-sink.ts';
import { buildApp } from './deps.ts';
import { createListener, loadTlsMaterial, reloadTlsIfChanged } from './tls.ts';

export interface RunningServer {
  server: Server;
  url: string;
  adminServer: Server;
  adminUrl: string;
  database: DatabaseHandle;
  stop(): Promise<void>;
}

export async function startServer(config: Config, logger: Logger): Promise<RunningServer> {
  for (const warning of config.warnings) logger.warn({ event: 'config.warning' }, warning);

  const database = await openDatabase({
    url: config.databaseUrl,
    dataDir: config.dataDir,
    poolSize: config.databasePoolSize,
  });
  try {
    if (config.migrateOnStart) {
      const applied = await migrateToLatest(database.db);
      if (applied.length) logger.info({ event: 'db.migrated', applied }, `applied ${applied.length} migration(s)`);
    } else {
      const pending = await pendingMigrations(database.db);
      if (pending.length) throw new Error(`the database has pending migrations (${pending.join(', ')}): run \`gatehouse migrate\``);
    }

    const tls = config.tls ? await loadTlsMaterial(config.tls) : undefined;
    // One sink for the life of the process, shared by every rebuild of the app.
    const auditSink = createAuditSink(config.auditSink);
    const build = () => buildApp(config, database, logger, { auditSink });
    let built = await build();
    // Settings that weaken a safe default are in the audit trail for as long as they are in force.
    for (const warning of config.warnings) {
      await built.audit.record({ event: 'config.warning', actor: 'gatehouse', details: { message: warning } });
    }
    let handle = built.app.callback();
    let handleAdmin = built.adminApp.callback();
    const server = createListener((req, res) => handle(req, res), tls);
    server.keepAliveTimeout = 65_000;
    const adminServer = createListener((req, res) => handleAdmin(req, res), tls);
    const keysService = createKeysService({ db: database.db, secretBox: createSecretBox(config.keyEncryptionKey) });
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

    let sweeping: Promise<unknown> = Promise.resolve();
    const sweeper =
      config.sweepInterval > 0
        ? setInterval(() => {
            sweeping = sweepExpired(database.db)
              .then((n) => n && logger.debug({ event: 'db.swept', deleted: n }, 'deleted expired rows'))
              .then(() => (config.pendingClientTtl > 0 ? built.clients.expireStalePending(config.pendingClientTtl) : []))
              .then((expired) => expired.length && logger.info({ event: 'clients.expired', count: expired.length }, 'deleted never-approved clients'))
              .catch((err: unknown) => logger.warn({ err }, 'sweeping expired rows failed'));
          }, config.sweepInterval * 1000)
        : undefined;
    sweeper?.unref();

    // Keys: rotate on schedule, and pick up rotations (by any instance or the CLI) without a
    // restart — a new key starts signing at its activation time, a retired one leaves the JWKS.
    let keyCheck: Promise<unknown> = Promise.resolve();
    const keyWatcher = setInterval(() => {
      keyCheck = (async () => {
        if (config.tls && tls) await reloadTlsIfChanged(config.tls, tls, [server, adminServer] as HttpsServer[], logger);
        if (config.keyRotationInterval > 0) {
          const status = await keysService.rotationStatus();
          if (status.activeAgeSeconds >= config.keyRotationInterval && !status.scheduled) {
            const rotated = await rotateSigningKey(
              { keys: keysService, resources: built.resources, audit: built.audit },
              { leadSeconds: config.keyPublishLead, defaultTokenTtl: config.accessTokenTtl, actor: 'gatehouse' },
            );
            logger.info({ event: 'keys.rotated', kid: rotated.kid }, 'scheduled signing-key rotation');
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
        if (sweeper) clearInterval(sweeper);
        clearInterval(keyWatcher);
        await keyCheck;
        await Promise.all(
          [server, adminServer].map(
            (s) =>
              new Promise<void>((resolve) => {
                s.close(() => resolve());
                s.closeIdleConnections();
              }),
          ),
        );
        await sweeping;
        await auditSink?.close();
        await database.close();
      },
    };
  } catch (err) {
    await database.close();
    throw err;
  }
}
