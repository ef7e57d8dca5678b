/**
 * Zed (zed-industries/zed), MCP OAuth as shipped by PR #51768 ("MCP remote server OAuth
 * authentication", merged 2026-03-17): crates/context_server/src/oauth.rs, the version with
 * `pub const CIMD_URL`. Two paths are replayed.
 *
 * - Registration: the metadata document first when the AS advertises
 *   client_id_metadata_document_supported, else DCR (`determine_registration_strategy`).
 * - Document: client_id https://zed.dev/oauth/client-metadata.json (`CIMD_URL`); content from a
 *   third-party capture: client_name Zed, client_uri https://zed.dev, redirect_uris
 *   [http://127.0.0.1/callback], grant_types [authorization_code, refresh_token], response_types
 *   [code], token_endpoint_auth_method none, logo_uri https://cdn.zed.dev/images/logo-dark.png.
 *   The port-less redirect is confirmed by zed#56210 ("Zed client metadata declares:
 *   `http://127.0.0.1/callback`"), which also reports the runtime redirect
 *   http://127.0.0.1:<dynamic-port>/callback being refused by a strict server.
 * - DCR body, exactly (`dcr_registration_body`): {"client_name":"Zed","redirect_uris":
 *   ["http://127.0.0.1/callback"],"grant_types":["authorization_code"],"response_types":["code"],
 *   "token_endpoint_auth_method":"none"} — no refresh_token grant (zed#53784, open), yet Zed
 *   refreshes (`token_refresh_params`). Gatehouse registers refresh_token for it.
 * - Redirect at runtime: http://127.0.0.1:<port>/callback (oauth.rs tests use port 12345).
 * - resource: always sent, built from the server URL, not from the PRM (`canonical_server_uri`):
 *   lower-case scheme and host, path without trailing slash, a root URL without slash
 *   (https://mcp.example.com). Sent at /authorize, /token (`token_exchange_params`) and on refresh.
 * - scope: the WWW-Authenticate scope, else all PRM scopes_supported, else none (`select_scopes`);
 *   no offline_access, no prompt.
 * - Token auth `none` (client_id in the body). Refresh body: grant_type, refresh_token, client_id,
 *   resource; no scope (`token_refresh_params`).
 * Unknown: the state format in the shipped code (an earlier variant, oauth.rs @7634561f, used 16
 * random bytes base64url, 22 characters: assumed here); whether Zed sends MCP-Protocol-Version on
 * discovery (not sent here); the live document content (PR #51768 mentions a preferred port 27523
 * "listed in the CIMD", conflicting with zed#56210: the port-less capture is used, with a dynamic
 * port). Assumptions: the document profile's PRM lists scopes (all requested), the DCR profile's
 * PRM lists none (no scope parameter, so Gatehouse grants the resource's default scopes).
 */
import { describeClient } from './harness.ts';

describeClient({
  client: 'Zed (metadata document)',
  registration: {
    kind: 'cimd',
    path: '/oauth/client-metadata.json',
    document: (clientId) => ({
      client_id: clientId,
      client_name: 'Zed',
      client_uri: 'https://zed.dev',
      redirect_uris: ['http://127.0.0.1/callback'],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      logo_uri: 'https://cdn.zed.dev/images/logo-dark.png',
    }),
  },
  redirectUri: 'http://127.0.0.1:43127/callback',
  // Server URL typed as https://MCP.Example.com: Zed's canonical form is https://mcp.example.com.
  resource: { uri: 'https://mcp.example.com', scopes: ['mcp:read', 'mcp:write'], defaultScopes: ['mcp:read'] },
  sends: {
    authorizeResource: 'https://mcp.example.com',
    tokenResource: 'https://mcp.example.com',
    refreshResource: 'https://mcp.example.com',
    scope: 'mcp:read mcp:write',
    refreshScope: undefined,
    state: '07vegbUPx9zXnO1grZ_KnQ',
  },
  tokenAuth: 'none',
  expectedScopes: ['mcp:read', 'mcp:write'],
});

describeClient({
  client: 'Zed (dynamic registration, authorization_code only)',
  registration: {
    kind: 'dcr',
    body: {
      client_name: 'Zed',
      redirect_uris: ['http://127.0.0.1/callback'],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    },
  },
  redirectUri: 'http://127.0.0.1:38211/callback',
  // Server URL typed as https://MCP.Example.com/mcp: Zed sends https://mcp.example.com/mcp.
  resource: { uri: 'https://mcp.example.com/mcp', scopes: ['mcp:tools', 'mcp:admin'], defaultScopes: ['mcp:tools'] },
  sends: {
    authorizeResource: 'https://mcp.example.com/mcp',
    tokenResource: 'https://mcp.example.com/mcp',
    refreshResource: 'https://mcp.example.com/mcp',
    // No WWW-Authenticate scope and no PRM scopes_supported: no scope parameter.
    scope: undefined,
    refreshScope: undefined,
    state: 'y3Qd0hC1sVbXr8mKpL2eTw',
  },
  tokenAuth: 'none',
  expectedScopes: ['mcp:tools'],
});
