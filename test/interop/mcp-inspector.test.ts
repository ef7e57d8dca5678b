/**
 * MCP Inspector (modelcontextprotocol/inspector), the web UI at http://localhost:6274. Facts from
 * its source and issue tracker; discovery, the authorization URL, the code exchange and refresh are
 * done by the TypeScript SDK (`@modelcontextprotocol/sdk/client/auth.js`, see ts-sdk-example.test.ts).
 *
 * - Registration: DCR with the provider's `clientMetadata` posted as is — both callbacks
 *   http://localhost:6274/oauth/callback and …/oauth/callback/debug in one registration (comment
 *   refers to inspector#825), `token_endpoint_auth_method` none, grant_types
 *   [authorization_code, refresh_token], response_types [code], client_name "MCP Inspector",
 *   client_uri https://github.com/modelcontextprotocol/inspector, `scope`, and no application_type
 *   (client/src/lib/auth.ts, `InspectorOAuthClientProvider`). The origin is
 *   window.location.origin, by default port 6274 (auth.ts `redirectUrl`; inspector#556).
 * - `scope` in the DCR body and at /authorize: all `scopes_supported` of the protected-resource
 *   metadata, else all of the AS's (auth.ts `discoverScopes`, client/src/lib/oauth-state-machine.ts,
 *   client/src/lib/oauth/utils/scope-resolver.ts). The Inspector does not add offline_access.
 * - Before inspector PR #1003 (merged 2026-01) the DCR body carried `"scope": ""` when no scope was
 *   known (auth.ts `this.scope ?? ""`); PR #1003 reports Keycloak rejecting it. `discoverScopes`
 *   reads the AS metadata at the MCP server's origin, not at the AS the PRM names (auth.ts), so
 *   with Gatehouse on its own origin and a PRM without scopes_supported nothing is known at
 *   registration; the authorization URL then carried all the AS's scopes_supported
 *   (inspector#587: "the authorization URL … contains **all** the scopes listed in the
 *   oauth-authorization-server"): the second profile below.
 * - Callback: the normal flow uses /oauth/callback, the guided "Auth Settings" (debug) flow
 *   /oauth/callback/debug (auth.ts; oauth-state-machine.ts; inspector#930 shows the registration
 *   and the authorization request naming different ones of the two).
 * - state: 32 random bytes as lowercase hex, 64 characters (client/src/utils/oauthUtils.ts
 *   `generateOAuthState`; observed in inspector#795).
 * - resource: the PRM `resource` as `URL.href`, on authorize, token and refresh when PRM was found
 *   (oauth-state-machine.ts + SDK `selectResourceURL`; observed
 *   `resource=http%3A%2F%2Flocalhost%3A8080%2Fmcp2` in inspector#930). Refresh sends no `scope`
 *   (SDK `refreshAuthorization`). With no secret returned the SDK authenticates with `none`.
 * - No `prompt`: the SDK adds prompt=consent only when scope contains offline_access.
 * Unknown: which SDK version a given Inspector release pins; whether the Inspector proxy forwards
 * MCP-Protocol-Version on discovery (not sent here); the Inspector's CIMD client_id URL (its CIMD
 * document was reported as not yet published), so no CIMD profile. Assumption (second profile):
 * the old `"scope": ""` body paired with the #587 authorization scopes and the debug callback.
 */
import { describeClient } from './harness.ts';

const INSPECTOR_REDIRECT_URIS = ['http://localhost:6274/oauth/callback', 'http://localhost:6274/oauth/callback/debug'];

describeClient({
  client: 'MCP Inspector (current, normal callback)',
  registration: {
    kind: 'dcr',
    body: {
      redirect_uris: INSPECTOR_REDIRECT_URIS,
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      client_name: 'MCP Inspector',
      client_uri: 'https://github.com/modelcontextprotocol/inspector',
      // All of the protected-resource metadata's scopes_supported.
      scope: 'mcp:read mcp:write',
    },
  },
  redirectUri: 'http://localhost:6274/oauth/callback',
  resource: { uri: 'https://mcp.example.com/mcp', scopes: ['mcp:read', 'mcp:write'], defaultScopes: ['mcp:read'] },
  sends: {
    authorizeResource: 'https://mcp.example.com/mcp',
    tokenResource: 'https://mcp.example.com/mcp',
    refreshResource: 'https://mcp.example.com/mcp',
    scope: 'mcp:read mcp:write',
    refreshScope: undefined,
    state: '635a52197bec3bbe74d07add269150920d9565c9f3bd579099b6c337060d2bd6',
  },
  tokenAuth: 'none',
  expectedScopes: ['mcp:read', 'mcp:write'],
});

describeClient({
  client: 'MCP Inspector (before PR #1003: empty scope, debug callback)',
  registration: {
    kind: 'dcr',
    body: {
      redirect_uris: INSPECTOR_REDIRECT_URIS,
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      client_name: 'MCP Inspector',
      client_uri: 'https://github.com/modelcontextprotocol/inspector',
      scope: '',
    },
  },
  redirectUri: 'http://localhost:6274/oauth/callback/debug',
  // The PRM lists no scopes_supported; Gatehouse's scopes_supported lists this resource's scopes.
  resource: { uri: 'https://mcp.example.com/mcp', scopes: ['tools:call', 'resources:read'], defaultScopes: ['tools:call'] },
  sends: {
    authorizeResource: 'https://mcp.example.com/mcp',
    tokenResource: 'https://mcp.example.com/mcp',
    refreshResource: 'https://mcp.example.com/mcp',
    // All of the AS's scopes_supported (inspector#587).
    scope: 'tools:call resources:read',
    refreshScope: undefined,
    state: '39360631c549fcc9ad80657d5c33e8562921501004b890656e1f31b3d0f68273',
  },
  tokenAuth: 'none',
  expectedScopes: ['tools:call', 'resources:read'],
});
