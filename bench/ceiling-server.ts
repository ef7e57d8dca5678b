/**
 * The ceiling: the same oidc-provider version Gatehouse runs on, with its default in-memory adapter
 * and a configuration equivalent to Gatehouse's profile (src/oidc/profile.ts), and nothing else —
 * no database, no audit trail, no rate limits, no approval checks. Whatever Gatehouse adds on top
 * of its engine shows up as the distance to this server.
 *
 * Run by bench/run.ts as a child process (`node --import tsx bench/ceiling-server.ts`), so that its
 * CPU time and memory are measured the same way as Gatehouse's. Environment:
 *   PORT            the port to listen on (127.0.0.1); the issuer is http://localhost:PORT
 *   BENCH_RESOURCE  the one resource (MCP server) tokens are issued for
 *   BENCH_CODE_TTL  authorization code lifetime in seconds (the harness sets the same for Gatehouse)
 *
 * Started with an IPC channel, it empties its store when the harness sends { type: 'reset' }.
 *
 * Differences from Gatehouse that cannot be removed are listed in bench/README.md.
 */
import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import Provider, { errors, interactionPolicy, type Configuration, type KoaContextWithOIDC } from 'oidc-provider';
// oidc-provider's default in-memory adapter keeps everything in one LRU of 1,000 entries (two
// generations, so at most ~2,000). A benchmark holds far more live artifacts at once (thousands of
// minted codes and registered clients), which that cap would evict mid-run. The ceiling uses the
// same adapter class over the same LRU class, only with a larger cap.
import MemoryAdapter from 'oidc-provider/lib/adapters/memory_adapter.js';
import LRU from 'oidc-provider/lib/helpers/lru.js';

const store = new LRU({ maxSize: 5_000_000 });

const port = Number(process.env.PORT);
if (!Number.isInteger(port) || port <= 0) throw new Error('PORT must be set');
const issuer = `http://localhost:${port}`;
const RESOURCE = process.env.BENCH_RESOURCE ?? 'https://mcp.example.com';
/** The resource's scopes and defaults, as the harness registers them at Gatehouse. */
const SCOPES = ['files:read', 'files:write'];
const DEFAULT_SCOPES = ['files:read'];

// Gatehouse's defaults (src/config/config.ts), in seconds.
const ACCESS_TOKEN_TTL = 600;
const AUTHORIZATION_CODE_TTL = Number(process.env.BENCH_CODE_TTL ?? 60);
const REFRESH_IDLE_TTL = 30 * 86400;
const REFRESH_ABSOLUTE_TTL = 90 * 86400;
const SESSION_TTL = 12 * 3600;
const INTERACTION_TTL = 600;

/** A fresh ES256 signing key, as Gatehouse generates on first start. */
function signingKey() {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: randomBytes(8).toString('base64url'), alg: 'ES256', use: 'sig' };
}

/**
 * Gatehouse remembers consent per user and client across browser sessions
 * (grants.findLatestGrantId); the in-memory equivalent is this index.
 */
const latestGrant = new Map<string, string>();
const grantKey = (accountId: string, clientId: string) => `${accountId}\u0000${clientId}`;

/** Gatehouse's policy minus its database-backed prompts (approval, disabled accounts). */
function createInteractionPolicy() {
  const { Check, base } = interactionPolicy;
  const policy = base();
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

const configuration: Configuration = {
  adapter: (model: string) => new MemoryAdapter(model, store),
  jwks: { keys: [signingKey()] },
  cookies: {
    keys: [randomBytes(32).toString('base64url')],
    long: { httpOnly: true, sameSite: 'lax' },
    short: { httpOnly: true, sameSite: 'lax' },
    names: { session: 'gh_session', interaction: 'gh_interaction', resume: 'gh_resume' },
  },
  routes: { authorization: '/authorize', token: '/token', registration: '/register', jwks: '/jwks', revocation: '/revoke' },
  responseTypes: ['code'],
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
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: true,
  expiresWithSession: async () => false,
  ttl: {
    AccessToken: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? ACCESS_TOKEN_TTL,
    AuthorizationCode: AUTHORIZATION_CODE_TTL,
    RefreshToken: (_ctx, token) => {
      const now = Math.floor(Date.now() / 1000);
      const iiat = (token as { iiat?: number }).iiat ?? now;
      return Math.max(1, Math.min(REFRESH_IDLE_TTL, REFRESH_ABSOLUTE_TTL - (now - iiat)));
    },
    Grant: REFRESH_ABSOLUTE_TTL,
    Session: SESSION_TTL,
    Interaction: INTERACTION_TTL,
    IdToken: 600,
  },
  interactions: { policy: createInteractionPolicy() },
  // Gatehouse's loadExistingGrant, with the in-memory index in place of its query.
  async loadExistingGrant(ctx) {
    const accountId = ctx.oidc.session?.accountId;
    const clientId = ctx.oidc.client?.clientId;
    if (!accountId || !clientId) return undefined;
    const grantId =
      ctx.oidc.result?.consent?.grantId || ctx.oidc.session?.grantIdFor(clientId) || latestGrant.get(grantKey(accountId, clientId));
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
  features: {
    // The ceiling's login and consent pages: any login name, no password check.
    devInteractions: { enabled: true },
    userinfo: { enabled: false },
    introspection: { enabled: false },
    revocation: { enabled: true },
    rpInitiatedLogout: { enabled: false },
    pushedAuthorizationRequests: { enabled: false },
    dPoP: { enabled: false },
    clientCredentials: { enabled: false },
    registration: { enabled: true, initialAccessToken: false, issueRegistrationAccessToken: false },
    resourceIndicators: {
      enabled: true,
      async defaultResource(_ctx, _client, oneOf) {
        return oneOf ?? RESOURCE;
      },
      async useGrantedResource() {
        return true;
      },
      async getResourceServerInfo(ctx, indicator) {
        if (indicator !== RESOURCE) throw new errors.InvalidTarget('the resource is not registered at this authorization server');
        const route = (ctx as KoaContextWithOIDC).oidc.route;
        const params = (ctx as KoaContextWithOIDC).oidc.params as { scope?: string } | undefined;
        // As Gatehouse: at /authorize, keep the requested scopes the resource offers, else its defaults.
        if ((route === 'authorization' || route === 'resume') && params) {
          const wanted = [...new Set(String(params.scope ?? '').split(' ').filter((s) => SCOPES.includes(s)))];
          params.scope = (wanted.length ? wanted : DEFAULT_SCOPES).join(' ');
        }
        return {
          scope: SCOPES.join(' '),
          audience: RESOURCE,
          accessTokenFormat: 'jwt',
          accessTokenTTL: ACCESS_TOKEN_TTL,
          jwt: { sign: { alg: 'ES256' } },
        };
      },
    },
  },
};

const provider = new Provider(issuer, configuration);
provider.on('grant.saved', (grant: { accountId?: string; clientId?: string; jti: string }) => {
  if (grant.accountId && grant.clientId) latestGrant.set(grantKey(grant.accountId, grant.clientId), grant.jti);
});
provider.on('server_error', (_ctx: unknown, error: unknown) => {
  process.stderr.write(`ceiling: server_error: ${String((error as Error)?.stack ?? error)}\n`);
});

const server = createServer(provider.callback());
server.keepAliveTimeout = 65_000;
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`ceiling listening on ${issuer}\n`);
});
// Between rounds the harness empties the store (over the IPC channel it opens), so that state piled
// up by earlier rounds (tens of thousands of clients and tokens) does not slow later rounds down.
process.on('message', (message: unknown) => {
  if ((message as { type?: string } | null)?.type !== 'reset') return;
  store.clear();
  latestGrant.clear();
  process.send?.({ type: 'reset-done' });
});

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
