/**
 * The OAuth 2.1 profile for MCP, in one place. Every oidc-provider option that matters is set here,
 * with the rule it comes from.
 */
import Provider, { errors, interactionPolicy, type Configuration, type KoaContextWithOIDC } from 'oidc-provider';
import type { Logger } from 'pino';
import type { AccountsService } from '../accounts/accounts.service.ts';
import { isDatabaseUnavailable } from '../db/errors.ts';
import { requestContext } from '../http/request-context.ts';
import type { AuditLog } from '../audit/audit-log.ts';
import type { ClientPolicyLookup } from '../clients/client-policy.ts';
import type { ClientsRepository } from '../clients/clients.repository.ts';
import type { MetadataDocuments } from '../clients/metadata-documents.ts';
import type { RegistrationGuard } from '../clients/registration-guard.ts';
import type { TrustPolicy } from '../clients/trust-policy.ts';
import type { FetchedDocument } from '../clients/safe-fetch.ts';
import { normalizeClientMetadata } from '../clients/redirect-uris.ts';
import type { Config } from '../config/config.ts';
import type { DB } from '../db/database.ts';
import { currentUnitOfWork, inDeferredUnitOfWork, inUnitOfWork, onCommit } from '../db/unit-of-work.ts';
import type { KeyMaterial } from '../keys/keys.service.ts';
import type { TokenMetrics } from '../metrics/metrics.ts';
import type { SecretBox } from '../keys/secret-box.ts';
import type { ResourcesService } from '../resources/resources.service.ts';
import { createAdapterFactory, installHashedClientSecrets } from './adapter.ts';
import { createGrantsRepository } from './grants.repository.ts';
import { tokenRateLimit } from './token-rate-limit.ts';
import { createTokenPrefetch, tokenRequestIsDeferrable } from './token-prefetch.ts';
import { refreshRequest } from './rotation-grace.ts';
import { recognisedInThisRequest } from '../clients/recognition.ts';
import type { RateLimiter } from '../http/rate-limit.ts';
import { createResourceIndicatorsFeature, installResourceCanonicalization } from './resource-indicators.ts';

export interface ProviderDeps {
  config: Config;
  db: DB;
  secretBox: SecretBox;
  keys: KeyMaterial;
  resources: ResourcesService;
  accounts: AccountsService;
  /** Client ID Metadata Documents; undefined when disabled. */
  metadataDocuments?: MetadataDocuments;
  clients: ClientsRepository;
  trustPolicy: TrustPolicy;
  audit: AuditLog;
  /** Token and reuse counters (metrics/metrics.ts), bumped with the audit events once they commit. */
  metrics?: TokenMetrics | undefined;
  registrationGuard: RegistrationGuard;
  /** Per-client limit on the token endpoint (oidc/token-rate-limit.ts). */
  limiter: RateLimiter;
  logger: Logger;
  clientPolicy: ClientPolicyLookup;
  /** Every outbound request oidc-provider makes (a client's jwks_uri) goes through the SSRF guard. */
  outboundFetch: (url: string) => Promise<FetchedDocument>;
  renderError: (ctx: KoaContextWithOIDC, out: { error: string; error_description?: string }) => void;
}

/** Public routes. Names follow what MCP clients and RFC 8414 examples use. */
export const ROUTES = {
  authorization: '/authorize',
  token: '/token',
  registration: '/register',
  jwks: '/jwks',
  revocation: '/revoke',
} as const;

/** Requests whose database writes must be all-or-nothing (see db/unit-of-work.ts). */
const TRANSACTIONAL = new Set([ROUTES.token, ROUTES.registration, ROUTES.revocation]);

/**
 * oidc-provider's default policy prompts consent on every request from a native client (RFC 8252
 * §8.6: an attacker app can claim the same loopback redirect, so a repeat authorization must not
 * complete without the user). Gatehouse remembers consent, and keeps that protection by requiring
 * *some* user interaction: a native client gets a code without the consent page only when the user
 * has just signed in within this very request.
 */
/** The prompt Gatehouse adds in front of oidc-provider's: an unapproved client gets no code (issue 3 §3). */
export const APPROVAL_PROMPT = 'approval';

function createInteractionPolicy(clientPolicy: ClientPolicyLookup, accounts: AccountsService, clients: ClientsRepository) {
  const { Check, Prompt, base } = interactionPolicy;
  const policy = base();
  // A browser session whose account was disabled or deleted since must sign in again (oidc-provider
  // would otherwise fail later, in its consent checks, on the missing account).
  policy.get('login')!.checks.add(
    new Check('account_gone', 'the signed-in account is disabled or no longer exists', 'login_required', async (ctx) => {
      const accountId = ctx.oidc.session?.accountId;
      if (!accountId) return Check.NO_NEED_TO_PROMPT;
      return (await accounts.findActiveById(accountId)) ? Check.NO_NEED_TO_PROMPT : Check.REQUEST_PROMPT;
    }),
  );
  policy.unshift(
    new Prompt(
      { name: APPROVAL_PROMPT, requestable: false },
      async (ctx) => {
        const { status } = await clientPolicy(ctx.oidc.client!.clientId);
        return { clientStatus: status };
      },
      new Check('client_not_approved', 'the client is not approved by an administrator of this authorization server', 'access_denied', async (ctx) => {
        const clientId = ctx.oidc.client!.clientId;
        const { status } = await clientPolicy(clientId);
        if (status === 'approved') return Check.NO_NEED_TO_PROMPT;
        // Remember what it asked for: the administrator decides from that (issue 3 §4).
        const { resource, scope } = ctx.oidc.params as { resource?: unknown; scope?: unknown };
        if (status === 'pending' && typeof resource === 'string') {
          await clients.recordRequested(clientId, resource, String(scope ?? '').split(' ').filter(Boolean));
        }
        return Check.REQUEST_PROMPT;
      }),
    ),
  );
  const consent = policy.get('consent')!;
  consent.checks.remove('native_client_prompt');
  consent.checks.unshift(
    new Check('native_client_prompt', 'native clients require End-User interaction', 'interaction_required', (ctx) => {
      const { oidc } = ctx;
      const interacted = Boolean(oidc.result?.consent || oidc.result?.login);
      return oidc.client?.applicationType === 'native' && !interacted ? Check.REQUEST_PROMPT : Check.NO_NEED_TO_PROMPT;
    }),
  );
  return policy;
}

export function createProvider(deps: ProviderDeps): Provider {
  const { config } = deps;
  const grants = createGrantsRepository(deps.db);
  const adapter = createAdapterFactory({
    db: deps.db,
    secretBox: deps.secretBox,
    metadataDocuments: deps.metadataDocuments,
    clients: deps.clients,
    trustPolicy: deps.trustPolicy,
    audit: deps.audit,
    refreshTokenReuseGrace: config.refreshTokenReuseGrace,
  });

  const configuration: Configuration = {
    adapter,
    jwks: { keys: deps.keys.signing },
    cookies: {
      keys: deps.keys.cookies,
      long: { httpOnly: true, sameSite: 'lax' },
      short: { httpOnly: true, sameSite: 'lax' },
      names: { session: 'gh_session', interaction: 'gh_interaction', resume: 'gh_resume' },
    },
    routes: ROUTES,
    // OAuth 2.1 §4.1: the authorization code flow only; no implicit or hybrid.
    responseTypes: ['code'],
    // OAuth 2.1 §4.1.1 / §7.5.2, MCP authorization: PKCE for every client. oidc-provider only supports S256.
    pkce: { required: () => true },
    clientAuthMethods: ['none', 'client_secret_basic', 'client_secret_post', 'private_key_jwt'],
    clientDefaults: {
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      id_token_signed_response_alg: 'ES256',
    },
    enabledJWA: {
      idTokenSigningAlgValues: ['ES256'],
      clientAuthSigningAlgValues: ['ES256', 'ES384', 'PS256', 'RS256', 'EdDSA'],
    },
    scopes: ['offline_access'],
    claims: { openid: ['sub'] },
    // Refresh tokens for every client allowed the grant, without `offline_access` + prompt=consent,
    // which MCP clients do not send (MCP 2026-07-28: clients must not assume one is issued).
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    // OAuth 2.1 §4.3.1: rotate refresh tokens of public clients; we rotate for everyone.
    rotateRefreshToken: true,
    // Tokens are not tied to the browser session at Gatehouse.
    expiresWithSession: async () => false,
    ttl: {
      AccessToken: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? config.accessTokenTtl,
      AuthorizationCode: config.authorizationCodeTtl,
      // Idle lifetime, capped by the absolute lifetime counted from the first token of the chain (iiat).
      RefreshToken: (_ctx, token) => {
        const now = Math.floor(Date.now() / 1000);
        const iiat = (token as { iiat?: number }).iiat ?? now;
        return Math.max(1, Math.min(config.refreshTokenIdleTtl, config.refreshTokenAbsoluteTtl - (now - iiat)));
      },
      Grant: config.refreshTokenAbsoluteTtl,
      Session: config.sessionTtl,
      Interaction: config.interactionTtl,
      IdToken: 600,
    },
    // Runs on every client construction (DCR, stored, metadata documents): see clients/redirect-uris.ts.
    extraClientMetadata: {
      properties: ['software_id', 'software_version'],
      validator(_ctx, key, _value, metadata) {
        if (key !== 'software_id') return;
        const problem = normalizeClientMetadata(metadata as unknown as Record<string, unknown>);
        // InvalidRedirectUri takes no description of its own (its text is about /authorize): set ours.
        if (problem?.error === 'invalid_redirect_uri') {
          throw Object.assign(new errors.InvalidRedirectUri(), { error_description: problem.description });
        }
        if (problem) throw new errors.InvalidClientMetadata(problem.description);
      },
    },
    // oidc-provider fetches a client's jwks_uri (private_key_jwt, e.g. ChatGPT's metadata document)
    // with its own fetch; ours pins the checked address, follows no redirects, and limits size.
    async fetch(url, _options) {
      const fetched = await deps.outboundFetch(String(url));
      const headers = new Headers();
      for (const [name, value] of Object.entries(fetched.headers)) if (typeof value === 'string') headers.set(name, value);
      return new Response(fetched.status === 204 || fetched.status === 304 ? null : new Uint8Array(fetched.body), { status: fetched.status, headers });
    },
    interactions: { policy: createInteractionPolicy(deps.clientPolicy, deps.accounts, deps.clients), url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    async findAccount(_ctx, sub) {
      const account = await deps.accounts.findActiveById(sub);
      if (!account) return undefined;
      return { accountId: account.id, claims: async () => ({ sub: account.id, email: account.email }) };
    },
    // Consent is remembered per user and client (and, through the grant, per resource and scope):
    // reuse the newest live grant, with a fresh lifetime since the user just authorised again.
    async loadExistingGrant(ctx) {
      const accountId = ctx.oidc.session?.accountId;
      const clientId = ctx.oidc.client?.clientId;
      if (!accountId || !clientId) return undefined;
      const grantId =
        ctx.oidc.result?.consent?.grantId ||
        ctx.oidc.session?.grantIdFor(clientId) ||
        (await grants.findLatestGrantId(accountId, clientId));
      if (!grantId) return undefined;
      const grant = await ctx.oidc.provider.Grant.find(grantId);
      if (!grant || grant.accountId !== accountId || grant.clientId !== clientId) return undefined;
      if (!ctx.oidc.result?.consent?.grantId) {
        (grant as { exp?: number }).exp = undefined;
        (grant as { expiresIn?: number }).expiresIn = undefined;
        await grant.save();
      }
      return grant;
    },
    async renderError(ctx, out) {
      deps.renderError(ctx, out as { error: string; error_description?: string });
    },
    features: {
      devInteractions: { enabled: false },
      userinfo: { enabled: false },
      introspection: { enabled: false },
      revocation: { enabled: true },
      rpInitiatedLogout: { enabled: false },
      pushedAuthorizationRequests: { enabled: false },
      dPoP: { enabled: false },
      clientCredentials: { enabled: false },
      // RFC 7591, open: MCP clients register themselves without an initial access token.
      registration: {
        enabled: config.registration === 'open',
        initialAccessToken: false,
        issueRegistrationAccessToken: false,
      },
      resourceIndicators: createResourceIndicatorsFeature({ resources: deps.resources, clientPolicy: deps.clientPolicy }) as never,
    },
  };

  const provider = new Provider(config.issuer, configuration);
  provider.proxy = config.trustProxy;
  installResourceCanonicalization(provider);
  installHashedClientSecrets(provider.Client);

  // Failure is closed and clean (issue 4 §8): an unexpected error is a 500 that says nothing but
  // its request id; the database being away is a 503 the client may retry.
  const serverErrors = new WeakMap<object, unknown>();
  provider.on('server_error', (ctx: KoaContextWithOIDC, error: unknown) => {
    serverErrors.set(ctx, error);
    deps.logger.error({ err: error, path: ctx.path, request_id: requestContext()?.requestId }, 'request failed');
  });
  provider.use(async (ctx, next) => {
    try {
      await next();
    } catch (error) {
      // Thrown by our own middleware around oidc-provider's routes (its own errors arrive as 'server_error').
      serverErrors.set(ctx, error);
      deps.logger.error({ err: error, path: ctx.path, request_id: requestContext()?.requestId }, 'request failed');
      ctx.status = 500;
    }
    if (ctx.status !== 500 || !serverErrors.has(ctx)) return;
    const requestId = requestContext()?.requestId;
    const unavailable = isDatabaseUnavailable(serverErrors.get(ctx));
    const out = unavailable
      ? { error: 'temporarily_unavailable', error_description: 'the service is temporarily unavailable: try again in a few seconds', request_id: requestId }
      : { error: 'server_error', error_description: 'an unexpected error occurred', request_id: requestId };
    if (unavailable) ctx.set('Retry-After', '5');
    if (ctx.response.is('html')) deps.renderError(ctx as KoaContextWithOIDC, out);
    else ctx.body = out;
    ctx.status = unavailable ? 503 : 500;
  });

  // Endpoint URLs in metadata and redirects are built from the request's Host; pin them to the
  // issuer so a forged Host header can never make Gatehouse advertise someone else's endpoints.
  const issuerHost = new URL(config.issuer).host;
  provider.use(async (ctx, next) => {
    ctx.req.headers.host = issuerHost;
    delete ctx.req.headers['x-forwarded-host'];
    await next();
  });

  // Discovery says `response_modes_supported: ["query"]`, and Gatehouse means it (issue 15 §9):
  // oidc-provider would also answer in `fragment` or `form_post`. Any other mode is named so that
  // oidc-provider refuses it as unsupported itself — `unsupported_response_mode`, delivered in the
  // query (OAuth 2.0 Multiple Response Types §2.1; the error is not sent in the mode it refused).
  provider.use(async function onlyQueryResponseMode(ctx, next) {
    if (ctx.method === 'GET' && ctx.path === ROUTES.authorization) {
      const mode = ctx.query.response_mode;
      if (mode !== undefined && mode !== 'query') ctx.query = { ...ctx.query, response_mode: 'unsupported' };
    }
    await next();
  });

  // RFC 9700 §4.11.2: redirect automatically only to trusted URIs. The redirect URIs of a client
  // nobody approved (pending, rejected, suspended: open registration lets anyone register any URI)
  // are trusted by nobody, so whatever went wrong — prompt=none, PKCE missing, an unsupported
  // response type, an unknown resource — it gets Gatehouse's own page, never a redirect with the
  // error (issue 15 §1; docs/security.md I-35). Approved clients get errors at their redirect URI
  // as OAuth 2.1 §4.1.2.1 says (README, "How it behaves").
  const issuerOrigin = new URL(config.issuer).origin;
  provider.use(async function keepUnapprovedClientsHome(ctx, next) {
    await next();
    const route = ctx.oidc?.route;
    const clientId = ctx.oidc?.client?.clientId;
    if ((route !== 'authorization' && route !== 'resume') || !clientId) return;
    const location = ctx.response.get('location');
    const redirecting = ctx.status >= 300 && ctx.status < 400 && Boolean(location) && new URL(location, issuerOrigin).origin !== issuerOrigin;
    // form_post answers with a page that posts to the redirect URI (200, or 400 for an error): the same thing.
    const posting = ctx.oidc?.params?.response_mode === 'form_post' && Boolean(ctx.response.is('html'));
    if (!redirecting && !posting) return;
    const { status } = await deps.clientPolicy(clientId);
    if (status === 'approved') return;
    const name = ctx.oidc.client?.clientName ?? clientId;
    const said = ctx.oidc.params?.error ?? new URL(location || '/', issuerOrigin).searchParams.get('error');
    ctx.remove('location');
    deps.renderError(ctx as KoaContextWithOIDC, {
      error: 'client_not_approved',
      error_description:
        status === 'pending'
          ? `${name} is waiting for approval by your administrator${said ? ` (and its request failed: ${said})` : ''}`
          : `your administrator has ${status === 'rejected' ? 'not approved' : 'suspended'} ${name}`,
    });
    ctx.status = 403;
  });

  /**
   * RFC 6749 §5.2 `invalid_scope`: a refresh that asks only for scopes the client may not have (its
   * ceiling was lowered, or it asks for what it was never allowed) would otherwise answer 200 with an
   * empty scope (issue 15 §9). Runs before the request's writes are sent: an error answer commits
   * nothing, so the refresh token is not rotated.
   */
  function refuseEmptyScope(ctx: KoaContextWithOIDC) {
    if (ctx.path !== ROUTES.token || ctx.status !== 200) return;
    const asked = (ctx.oidc?.params as { scope?: unknown } | undefined)?.scope;
    const at = ctx.oidc?.entities.AccessToken as { scope?: string } | undefined;
    if (typeof asked !== 'string' || !asked.trim() || (at?.scope ?? '').trim()) return;
    ctx.status = 400;
    ctx.body = { error: 'invalid_scope', error_description: `none of the requested scopes (${asked.trim()}) may be granted to this client here` };
  }

  /** Audit events for token, registration and revocation requests, in their transaction. */
  async function auditOutcome(ctx: KoaContextWithOIDC) {
    const { oidc } = ctx;
    const clientId = oidc?.client?.clientId;
    if (ctx.path === ROUTES.token) {
      const refreshing = oidc.params?.grant_type === 'refresh_token' ? refreshRequest() : undefined;
      if (ctx.status === 200) {
        const at = oidc.entities.AccessToken as { accountId?: string; aud?: string | string[]; scope?: string; grantId?: string } | undefined;
        const refresh = oidc.params?.grant_type === 'refresh_token';
        // A retry within the rotation grace (oidc/rotation-grace.ts) is its own event: the client
        // presented the token it had just rotated, and its undelivered successor was replaced.
        const grace = refreshing?.graceRetry === true;
        await deps.audit.record({
          event: grace ? 'token.refreshed_within_grace' : refresh ? 'token.refreshed' : 'token.issued',
          actor: clientId ? `client:${clientId}` : undefined,
          clientId,
          accountId: at?.accountId,
          resource: typeof at?.aud === 'string' ? at.aud : at?.aud?.[0],
          details: {
            grant_type: oidc.params?.grant_type,
            scope: at?.scope,
            grant_id: at?.grantId,
            ...(grace ? { replaced: 'the successor issued by the previous refresh, never used' } : {}),
          },
        });
        onCommit(() => {
          deps.metrics?.tokenIssued(oidc.params?.grant_type);
          if (grace) deps.metrics?.graceRefresh();
        });
      } else if (currentUnitOfWork()?.revoked) {
        const token = (oidc.entities.RefreshToken ?? oidc.entities.AuthorizationCode) as { accountId?: string; grantId?: string } | undefined;
        const foreign = refreshing?.foreignReplay;
        await deps.audit.record({
          event: 'token.reuse_detected',
          actor: clientId ? `client:${clientId}` : undefined,
          clientId,
          accountId: token?.accountId ?? foreign?.accountId,
          details: {
            grant_type: oidc.params?.grant_type,
            grant_id: token?.grantId ?? foreign?.grantId,
            revoked: 'the whole grant',
            ...(foreign ? { presented_by: 'another client than the one it was issued to' } : {}),
          },
        });
        onCommit(() => deps.metrics?.reuseDetected(oidc.params?.grant_type));
      }
    } else if (ctx.path === ROUTES.registration && ctx.status === 201) {
      const body = ctx.body as { client_id?: string; client_id_issued_at?: number; client_name?: string; redirect_uris?: string[]; token_endpoint_auth_method?: string };
      const recognised = recognisedInThisRequest();
      if (recognised && body.client_id === recognised.generatedId) {
        // The same public client registering again (clients/recognition.ts): it is the existing one.
        body.client_id = recognised.clientId;
        body.client_id_issued_at = recognised.issuedAt;
      }
      // The registration's `scope` is not kept as metadata (see clients/redirect-uris.ts); keep it for the administrator.
      const asked = (oidc.body as { scope?: unknown } | undefined)?.scope;
      if (body.client_id && typeof asked === 'string' && asked.trim()) {
        await deps.clients.recordRequested(body.client_id, '*', asked.split(' ').filter(Boolean));
      }
      if (recognised && body.client_id === recognised.clientId) {
        await deps.audit.record({
          event: 'client.recognised',
          actor: `client:${recognised.clientId}`,
          clientId: recognised.clientId,
          details: { client_name: body.client_name, status: recognised.status },
        });
        return;
      }
      const policy = body.client_id ? await deps.clientPolicy(body.client_id) : undefined;
      await deps.audit.record({
        event: 'client.registered',
        actor: body.client_id ? `client:${body.client_id}` : undefined,
        clientId: body.client_id,
        details: { client_name: body.client_name, redirect_uris: body.redirect_uris, token_endpoint_auth_method: body.token_endpoint_auth_method, status: policy?.status },
      });
    } else if (ctx.path === ROUTES.revocation && ctx.status === 200) {
      await deps.audit.record({
        event: 'token.revoked',
        actor: clientId ? `client:${clientId}` : undefined,
        clientId,
        details: { token_type_hint: oidc.params?.token_type_hint },
      });
    }
  }

  // Abuse controls before a registration is even parsed (clients/registration-guard.ts).
  provider.use(async (ctx, next) => {
    if (ctx.method === 'POST' && ctx.path === ROUTES.registration) {
      const length = ctx.get('content-length');
      const refusal = await deps.registrationGuard.check({ ip: ctx.ip, contentLength: length ? Number(length) : undefined });
      if (refusal) {
        ctx.status = refusal.status;
        if (refusal.retryAfter) ctx.set('Retry-After', String(refusal.retryAfter));
        ctx.set('Cache-Control', 'no-store');
        ctx.body = { error: refusal.error, error_description: refusal.description };
        return;
      }
    }
    await next();
  });

  // Before the token request's transaction, so that refused attempts count too.
  provider.use(tokenRateLimit({ limiter: deps.limiter, perMinute: config.tokenRequestsPerMinute, path: ROUTES.token, prefetch: createTokenPrefetch(deps.db, { refreshTokenReuseGrace: config.refreshTokenReuseGrace }) }));

  provider.use(async (ctx, next) => {
    // Token, registration and revocation requests are all-or-nothing.
    if (ctx.method === 'POST' && ctx.path === ROUTES.token && tokenRequestIsDeferrable()) {
      // A redemption by a registered client: its writes (consume, the rotated token, the audit row)
      // go to the database as one statement once oidc-provider is done; if a concurrent redemption
      // consumed the code or token first, that statement stores nothing and the answer is invalid_grant.
      await inDeferredUnitOfWork(
        deps.db,
        async () => {
          await next();
          refuseEmptyScope(ctx as KoaContextWithOIDC);
          await auditOutcome(ctx as KoaContextWithOIDC);
        },
        () => ctx.status < 400,
        () => {
          ctx.status = 400;
          ctx.body = { error: 'invalid_grant', error_description: 'grant request is invalid' };
        },
      );
      return;
    }
    if (ctx.method === 'POST' && TRANSACTIONAL.has(ctx.path as never)) {
      await inUnitOfWork(
        deps.db,
        async () => {
          await next();
          refuseEmptyScope(ctx as KoaContextWithOIDC);
          await auditOutcome(ctx as KoaContextWithOIDC);
        },
        () => ctx.status < 400,
      );
      return;
    }
    await next();
    // RFC 8414 §2: advertise the registered resources' scopes.
    if (ctx.oidc?.route === 'discovery' && ctx.status === 200 && ctx.body && typeof ctx.body === 'object') {
      const body = ctx.body as Record<string, unknown>;
      const list = await deps.resources.list();
      body.scopes_supported = [...new Set(list.flatMap((r) => r.scopes.map((s) => s.name)))];
      body.grant_types_supported = ['authorization_code', 'refresh_token'];
      body.response_modes_supported = ['query'];
      // CIMD §5: an AS that supports metadata documents says so in its RFC 8414 metadata.
      if (deps.metadataDocuments) body.client_id_metadata_document_supported = true;
      delete body.claims_parameter_supported;
      delete body.claims_supported;
    }
  });

  return provider;
}
