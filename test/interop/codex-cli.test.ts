/**
 * Codex CLI (openai/codex). Its OAuth engine is rmcp (modelcontextprotocol/rust-sdk,
 * crates/rmcp/src/transport/auth.rs) driven from codex-rs/rmcp-client and
 * codex-rs/core/src/mcp/auth.rs. Its behaviour changed across releases; two paths are replayed.
 *
 * Current generation (first profile):
 * - Uses a ChatGPT-hosted Client ID Metadata Document when the AS advertises
 *   client_id_metadata_document_supported, lists `none` among its auth methods and the callback is
 *   a supported loopback URL (Codex MCP docs); client_id
 *   https://chatgpt.com/oauth/codex/<callback_id>/client.json, <callback_id> derived from the MCP
 *   server URL, reported as base64url(SHA256(<exact MCP server URL>)[:9]) (openai/codex#30460).
 * - The document (as seen in third-party test fixtures): client_name Codex, client_uri
 *   https://chatgpt.com/codex, application_type native, port-less redirect_uris
 *   http://127.0.0.1/callback/<id> and http://localhost/callback/<id>, token_endpoint_auth_method
 *   none, grant_types [authorization_code, refresh_token], response_types [code], and a logo_uri
 *   whose value is not in the facts (left out here).
 * - Used as http://127.0.0.1:<ephemeral port>/callback/<id> (#30460: redirect_uri
 *   http://127.0.0.1:33418/callback/<callback_id>; the port is ephemeral unless configured, docs).
 * - resource: rmcp sends the PRM `resource` at /authorize and /token (rmcp auth.rs), but NOT on
 *   refresh (openai/codex#33403 "MCP OAuth refresh omits the RFC 8707 resource parameter", codex-cli
 *   0.144.2; aomi-labs PR #567). Refresh without resource means an rmcp that also sends no `scope`
 *   on refresh (rmcp auth.rs [old]/[mid] `exchange_refresh_token`).
 * - scope: #17265 observed `scope=openid profile email offline_access` with
 *   `resource=https://{domain}/mcp`; here those are sent together with the resource's scopes.
 * - Discovery: rmcp sends MCP-Protocol-Version: 2024-11-05 on every discovery GET (rmcp auth.rs).
 * - state: rmcp `CsrfToken::new_random` (oauth2 crate: 16 random bytes, base64url, 22 characters;
 *   length not re-verified by the research). Token auth `none`. Codex validates `iss` (RFC 9207).
 *
 * Older generation (second profile): codex-rs/rmcp-client/src/perform_oauth_login.rs.
 * - DCR through rmcp `start_authorization(scopes, redirect_uri, Some("Codex"))`: body
 *   {"client_name":"Codex","redirect_uris":["http://127.0.0.1:<port>/callback"],
 *   "grant_types":["authorization_code","refresh_token"],"token_endpoint_auth_method":"none",
 *   "response_types":["code"]}; listener on 127.0.0.1:0 (ephemeral). The generation with a
 *   built-in CIMD fallback still registers with DCR when the AS has a registration_endpoint, as
 *   Gatehouse does (`should_use_default_cimd_metadata`).
 * - That generation's `oauth_resource` option is appended to the authorization URL as another
 *   `resource` parameter (`append_query_param`) next to the one rmcp adds: configured to the
 *   server's own URL, `resource` is sent twice with the same value. /token carries rmcp's single
 *   `resource`; refresh carries none (rmcp [old]/[mid]).
 * - scope: discovered by rmcp `select_scopes` (WWW-Authenticate > PRM > AS scopes_supported).
 * Unknown: the exact rmcp version of a given release (one snapshot pins 0.12.0); the exact state
 * length. Assumptions: the first profile's scopes are configured (`scopes` in config.toml or
 * --scopes) as the #17265 set plus the resource's; the second profile's `oauth_resource` equals
 * the server URL and its DCR body has rmcp's five fields (no scope, no application_type).
 */
import { createHash } from 'node:crypto';
import { describeClient } from './harness.ts';

const MCP_SERVER_URL = 'https://mcp.example.com/mcp';
/** base64url(SHA256(<exact MCP server URL>)[:9]) (openai/codex#30460). */
const CALLBACK_ID = createHash('sha256').update(MCP_SERVER_URL).digest().subarray(0, 9).toString('base64url');

describeClient({
  client: 'Codex CLI (ChatGPT-hosted metadata document)',
  registration: {
    kind: 'cimd',
    path: `/oauth/codex/${CALLBACK_ID}/client.json`,
    document: (clientId) => ({
      client_id: clientId,
      client_uri: 'https://chatgpt.com/codex',
      application_type: 'native',
      redirect_uris: [`http://127.0.0.1/callback/${CALLBACK_ID}`, `http://localhost/callback/${CALLBACK_ID}`],
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      client_name: 'Codex',
    }),
  },
  redirectUri: `http://127.0.0.1:51873/callback/${CALLBACK_ID}`,
  resource: { uri: MCP_SERVER_URL, scopes: ['mcp:read', 'mcp:write'], defaultScopes: ['mcp:read'] },
  sends: {
    authorizeResource: MCP_SERVER_URL,
    tokenResource: MCP_SERVER_URL,
    // openai/codex#33403: no resource on refresh.
    refreshResource: undefined,
    scope: 'openid profile email offline_access mcp:read mcp:write',
    refreshScope: undefined,
    state: 'Rf5MYyXmeo-aqTtZuAQ2CA',
    discoveryHeaders: { 'MCP-Protocol-Version': '2024-11-05' },
  },
  tokenAuth: 'none',
  expectedScopes: ['mcp:read', 'mcp:write'],
});

describeClient({
  client: 'Codex CLI (older, DCR with oauth_resource: resource sent twice)',
  registration: {
    kind: 'dcr',
    body: {
      client_name: 'Codex',
      redirect_uris: ['http://127.0.0.1:40917/callback'],
      grant_types: ['authorization_code', 'refresh_token'],
      token_endpoint_auth_method: 'none',
      response_types: ['code'],
    },
  },
  redirectUri: 'http://127.0.0.1:40917/callback',
  resource: { uri: MCP_SERVER_URL, scopes: ['mcp:read', 'mcp:write'], defaultScopes: ['mcp:read'] },
  sends: {
    authorizeResource: [MCP_SERVER_URL, MCP_SERVER_URL],
    tokenResource: MCP_SERVER_URL,
    refreshResource: undefined,
    // rmcp select_scopes: the PRM's scopes_supported.
    scope: 'mcp:read mcp:write',
    refreshScope: undefined,
    state: '92-G_EhlolNF3MDd1HjPUw',
    discoveryHeaders: { 'MCP-Protocol-Version': '2024-11-05' },
  },
  tokenAuth: 'none',
  expectedScopes: ['mcp:read', 'mcp:write'],
});
