/**
 * Wiring: builds the real object graph from a config and an open database. No singletons, so tests
 * build the same graph the server runs.
 */
import type { Logger } from 'pino';
import type { KoaContextWithOIDC } from 'oidc-provider';
import { createAccountsService } from '../accounts/accounts.service.ts';
import { createDeviceCookies } from '../accounts/device-cookies.ts';
import { createSignInThrottle } from '../accounts/sign-in-throttle.ts';
import { createAdminApp } from '../admin/admin-app.ts';
import { createAuditKeys } from '../audit/audit-keys.ts';
import { createAuditLog } from '../audit/audit-log.ts';
import { createAuditSink, type AuditSink } from '../audit/audit-sink.ts';
import { createAuditSealer, type AuditSealer } from '../audit/sealer.ts';
import { createClientPolicyLookup } from '../clients/client-policy.ts';
import { createClientsRepository } from '../clients/clients.repository.ts';
import { createClientsService } from '../clients/clients.service.ts';
import { createMetadataDocuments } from '../clients/metadata-documents.ts';
import { createRegistrationGuard } from '../clients/registration-guard.ts';
import { createTrustPolicy } from '../clients/trust-policy.ts';
import { safeFetch, type FetchTrust } from '../clients/safe-fetch.ts';
import type { Config } from '../config/config.ts';
import type { DatabaseHandle } from '../db/database.ts';
import { createRateLimiter } from '../http/rate-limit.ts';
import { requestContext } from '../http/request-context.ts';
import { createViews } from '../http/views.ts';
import { healthRoutes } from '../http/health.ts';
import { createKeysService } from '../keys/keys.service.ts';
import { createSecretBox } from '../keys/secret-box.ts';
import { createMetrics, type Metrics } from '../metrics/metrics.ts';
import { createInteractionsFacade } from '../oidc/interactions.facade.ts';
import { createProvider } from '../oidc/profile.ts';
import { createResourcesService } from '../resources/resources.service.ts';
import { createPublicApp } from './public-app.ts';

const ERROR_TITLES: Record<string, string> = {
  invalid_client: 'This application is not known to Gatehouse',
  client_not_approved: 'This application is not approved',
  invalid_redirect_uri: 'This application sent you to an address it has not registered',
  invalid_request: 'The application sent an invalid request',
  invalid_target: 'The application asked for an unknown MCP server',
  server_error: 'Something went wrong',
  temporarily_unavailable: 'Gatehouse is briefly unavailable',
};
const ERROR_MESSAGES: Record<string, string> = {
  client_not_approved:
    'Your organisation approves each application before it may use its MCP servers. Until then Gatehouse sends nothing back to it: ask your administrator, then start again from the application.',
  server_error: 'Gatehouse could not complete this request. Try again in a moment.',
  temporarily_unavailable: 'Gatehouse cannot reach its database right now. Try again in a few seconds.',
};

/** Client ID Metadata Document fetching: CIMD §6.6 recommends 5 KB; SEP-991 caps caching at 24 h. */
const DOCUMENT_FETCH = { timeoutMs: 3000, maxBytes: 5 * 1024 };
/** A client's JWKS (private_key_jwt). */
const JWKS_FETCH = { timeoutMs: 3000, maxBytes: 64 * 1024 };
const DOCUMENT_CACHE = { min: 60, max: 86400 };

export interface BuildOptions {
  /** Trust a local https server (its CA, loopback addresses) for metadata documents. Tests only: refused in production. */
  documentFetchTrust?: FetchTrust;
  /**
   * Where audit lines go. The server opens GATEHOUSE_AUDIT_SINK once and passes it to every rebuild
   * (a key rotation rebuilds the app), so no rebuild opens the file again; tests capture lines in memory.
   * When absent, buildApp opens GATEHOUSE_AUDIT_SINK itself.
   */
  auditSink?: AuditSink | undefined;
  /**
   * The Prometheus metrics (served at the admin listener's /metrics). Like the audit sink, the server
   * creates one per process ({@link createAppMetrics}) and passes it to every rebuild, so counters
   * survive a key rotation. When absent, buildApp creates its own.
   */
  metrics?: Metrics | undefined;
  /**
   * The audit sealer. One per process too ({@link createAppSealer}), so that its rounds never
   * overlap; when absent, buildApp creates one (tests call its `seal()` themselves).
   */
  sealer?: AuditSealer | undefined;
}

/** The metrics for one process over `database`: its pool's use, and the pending-clients count (read at scrape time only). */
export function createAppMetrics(database: DatabaseHandle): Metrics {
  const clients = createClientsRepository(database.db);
  return createMetrics({ poolStats: database.poolStats, pendingClients: () => clients.countPending() });
}

/**
 * The sealer for one process over `database` (src/audit/sealer.ts): its keys come from the
 * key-encryption key, its checkpoints go to `sink` as well.
 */
export function createAppSealer(config: Config, database: DatabaseHandle, options: { logger?: Logger; sink?: AuditSink | undefined; metrics?: Metrics } = {}): AuditSealer {
  return createAuditSealer({
    db: database.db,
    databaseUrl: config.databaseUrl,
    keys: createAuditKeys(config.keyEncryptionKey, config.previousKeyEncryptionKeys),
    sink: options.sink,
    logger: options.logger,
    metrics: options.metrics?.audit,
  });
}

export async function buildApp(config: Config, database: DatabaseHandle, logger: Logger, testOnly: BuildOptions = {}) {
  if (testOnly.documentFetchTrust && config.production) {
    throw new Error('documentFetchTrust is for the test suite only and cannot be used in production');
  }
  const { db } = database;
  const metrics = testOnly.metrics ?? createAppMetrics(database);
  const secretBox = createSecretBox(config.keyEncryptionKey, config.previousKeyEncryptionKeys);
  const keysService = createKeysService({ db, secretBox });
  const { keys, created } = await keysService.ensure();
  for (const what of created) logger.warn({ event: 'keys.generated' }, `generated a new ${what}`);

  const views = createViews();
  const resources = createResourcesService({ db });
  const accounts = createAccountsService({ db });
  const metadataDocuments =
    config.clientIdMetadataDocuments === 'enabled'
      ? createMetadataDocuments({
          db,
          fetch: (url) => safeFetch(url, { ...DOCUMENT_FETCH, trust: testOnly.documentFetchTrust }),
          cacheBounds: DOCUMENT_CACHE,
          fetchLimit: { perMinute: config.documentFetchesPerHost, limiter: createRateLimiter(db) },
        })
      : undefined;
  const auditSink = 'auditSink' in testOnly ? testOnly.auditSink : createAuditSink(config.auditSink);
  const audit = createAuditLog({ db, logger, sink: auditSink, keys: createAuditKeys(config.keyEncryptionKey, config.previousKeyEncryptionKeys) });
  const sealer = testOnly.sealer ?? createAppSealer(config, database, { logger, sink: auditSink, metrics });
  const clientsRepository = createClientsRepository(db);
  const clients = createClientsService({ db, resources, audit });
  const provider = createProvider({
    metadataDocuments,
    clients: clientsRepository,
    audit,
    metrics: metrics.tokens,
    logger,
    limiter: createRateLimiter(db),
    registrationGuard: createRegistrationGuard({
      limiter: createRateLimiter(db),
      clients: clientsRepository,
      perHour: config.registrationsPerHour,
      maxPending: config.maxPendingClients,
    }),
    trustPolicy: createTrustPolicy({
      approval: config.clientApproval,
      trustedDocumentHosts: config.trustedDocumentHosts,
      trustedCeiling: config.trustedClientCeiling,
      defaultScopes: () => resources.list(),
    }),
    clientPolicy: createClientPolicyLookup(clientsRepository),
    outboundFetch: (url) => safeFetch(url, { ...JWKS_FETCH, trust: testOnly.documentFetchTrust }),
    config,
    db,
    secretBox,
    keys,
    resources,
    accounts,
    renderError(ctx: KoaContextWithOIDC, out) {
      ctx.type = 'html';
      ctx.body = views.render('error.njk', {
        title: ERROR_TITLES[out.error] ?? 'Gatehouse could not continue',
        message: ERROR_MESSAGES[out.error] ?? 'Gatehouse stopped here rather than send you back to an address it cannot trust.',
        error: out.error,
        description: out.error_description,
        requestId: requestContext()?.requestId,
      });
    },
  });
  const interactions = createInteractionsFacade(provider);
  const app = createPublicApp({
    provider,
    interactions,
    accounts,
    resources,
    audit,
    views,
    logger,
    trustProxy: config.trustProxy,
    https: new URL(config.issuer).protocol === 'https:',
    health: healthRoutes({ db, signingKeys: () => keys.signing.length }),
    registrationOpen: config.registration === 'open',
    csrfSecret: keys.cookies[0]!,
    throttle: createSignInThrottle(db),
    deviceCookies: createDeviceCookies({ keys: keys.cookies, purpose: 'user' }),
    metrics,
  });
  const adminApp = createAdminApp({
    db,
    accounts,
    clients,
    resources,
    audit,
    views,
    logger,
    adminUrl: config.adminUrl,
    trustProxy: config.trustProxy,
    defaultAccessTokenTtl: config.accessTokenTtl,
    deviceCookies: createDeviceCookies({ keys: keys.cookies, purpose: 'admin' }),
    metrics,
  });
  return { app, adminApp, provider, resources, accounts, clients, audit, sealer, keys, db, metrics };
}

export type BuiltApp = Awaited<ReturnType<typeof buildApp>>;
