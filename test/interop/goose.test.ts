/**
 * Goose (block/goose, now aaif-goose/goose): crates/goose/src/oauth/mod.rs on top of rmcp
 * (modelcontextprotocol/rust-sdk, crates/rmcp/src/transport/auth.rs). Two paths are replayed.
 *
 * Metadata document (first profile; goose PR #8550, v1.32.0):
 * - client_id https://goose-docs.ai/oauth/client-metadata.json, used when the AS advertises
 *   client_id_metadata_document_supported (`start_authorization_with_metadata_url`). The document
 *   (documentation/static/oauth/client-metadata.json @90303368): client_name goose, redirect_uris
 *   [http://localhost/oauth_callback], grant_types [authorization_code] only (no refresh_token),
 *   response_types [code], token_endpoint_auth_method none, scope "openid profile email", and a
 *   non-standard code_challenge_methods_supported [S256].
 * - The listener binds 127.0.0.1:0 and the redirect says http://localhost:<port>/oauth_callback
 *   (mod.rs, that generation): an ephemeral port against the port-less document entry.
 * - Goose passes no scopes, so rmcp selects them (WWW-Authenticate > PRM scopes_supported > AS
 *   scopes_supported; rmcp `select_scopes`); Goose adds no prompt or other parameters. The
 *   document's own `scope` is not what it requests.
 * - resource: the MCP server URL / PRM `resource`, at /authorize and /token (rmcp).
 * - Refresh: Goose refreshes on connect and rmcp's AuthClient before expiry (goose#4600, PR
 *   #11324), even though the document lists no refresh_token grant (goose#11235: without a refresh
 *   token Goose re-authorises every start).
 *
 * Dynamic registration (second profile):
 * - rmcp DCR via `start_authorization(&[], redirect_uri, Some("goose"))` (mod.rs, block/goose
 *   @6176338b and aaif-goose/goose @f44795cd): client_name goose, redirect_uris
 *   [http://localhost:<port>/oauth_callback], grant_types [authorization_code, refresh_token],
 *   token_endpoint_auth_method none, response_types [code]; the newest rmcp adds
 *   `scope` (space-joined) and application_type native (SEP-837).
 * - With no WWW-Authenticate scope and no PRM scopes_supported, rmcp requests ALL of the AS's
 *   scopes_supported; the newest rmcp appends offline_access only when the AS lists it (Gatehouse
 *   does not).
 * - Discovery: rmcp sends MCP-Protocol-Version: 2024-11-05 on every discovery GET.
 * - Newest rmcp refresh: `resource` and `scope` = the granted scopes ("RFC 8707: the resource
 *   indicator is required on token requests, including refreshes").
 * - state: rmcp `CsrfToken::new_random` (oauth2 crate: 16 random bytes, base64url, 22 characters;
 *   length not re-verified). Token auth `none`. Newer Goose checks `iss` (PR #10678, goose#10677).
 * Unknown: the rmcp version of a given Goose release (0.6.0 at goose 1.9.0; goose#10677 cites
 * rmcp 1.8.0), hence whether refresh carries resource/scope; whether the live document still lists
 * only localhost (the newest Goose sends http://127.0.0.1:<port>/oauth_callback, which that
 * document does not list). Assumptions: both profiles replay the newest rmcp's refresh (resource
 * and the granted scopes); the DCR profile pairs Goose's DCR call with the newest rmcp body (a
 * CIMD-capable Goose registers with DCR only when the AS does not advertise metadata documents).
 */
import { describeClient } from './harness.ts';

describeClient({
  client: 'Goose (metadata document)',
  registration: {
    kind: 'cimd',
    path: '/oauth/client-metadata.json',
    document: (clientId) => ({
      client_id: clientId,
      client_name: 'goose',
      redirect_uris: ['http://localhost/oauth_callback'],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      scope: 'openid profile email',
      code_challenge_methods_supported: ['S256'],
    }),
  },
  redirectUri: 'http://localhost:61204/oauth_callback',
  resource: { uri: 'https://mcp.example.com/mcp', scopes: ['mcp:read', 'mcp:write'], defaultScopes: ['mcp:read'] },
  sends: {
    authorizeResource: 'https://mcp.example.com/mcp',
    tokenResource: 'https://mcp.example.com/mcp',
    refreshResource: 'https://mcp.example.com/mcp',
    // rmcp select_scopes: the PRM's scopes_supported.
    scope: 'mcp:read mcp:write',
    refreshScope: 'mcp:read mcp:write',
    state: 'vlXHkqEZKf_ABdvgZdffEQ',
    discoveryHeaders: { 'MCP-Protocol-Version': '2024-11-05' },
  },
  tokenAuth: 'none',
  expectedScopes: ['mcp:read', 'mcp:write'],
});

describeClient({
  client: 'Goose (rmcp dynamic registration)',
  registration: {
    kind: 'dcr',
    body: {
      client_name: 'goose',
      redirect_uris: ['http://localhost:50342/oauth_callback'],
      grant_types: ['authorization_code', 'refresh_token'],
      token_endpoint_auth_method: 'none',
      response_types: ['code'],
      // Newest rmcp: all of the AS's scopes_supported (the PRM lists none), and SEP-837.
      scope: 'notes:read notes:write',
      application_type: 'native',
    },
  },
  redirectUri: 'http://localhost:50342/oauth_callback',
  resource: { uri: 'https://mcp.example.com/mcp', scopes: ['notes:read', 'notes:write'], defaultScopes: ['notes:read'] },
  sends: {
    authorizeResource: 'https://mcp.example.com/mcp',
    tokenResource: 'https://mcp.example.com/mcp',
    refreshResource: 'https://mcp.example.com/mcp',
    scope: 'notes:read notes:write',
    refreshScope: 'notes:read notes:write',
    state: 'DOI8gQZL9HC2xxR2i19d9Q',
    discoveryHeaders: { 'MCP-Protocol-Version': '2024-11-05' },
  },
  tokenAuth: 'none',
  expectedScopes: ['notes:read', 'notes:write'],
});
