/**
 * Claude.ai connectors (also Claude Desktop, Cowork and mobile): the OAuth client runs on
 * Anthropic's backend (python-httpx, anthropics/claude-ai-mcp#1043). Closed source: the facts
 * come from Anthropic's docs, its issue tracker and captures other servers published.
 * "idx <n>" is a public file found by content whose repo/path the index did not return.
 *
 * - Uses its Client ID Metadata Document only when the AS advertises
 *   client_id_metadata_document_supported and `none` among the auth methods, else falls back to DCR
 *   (brendanlong/lion-reader PR #1519; home-assistant/core#179326 quoting the docs). client_id
 *   https://claude.ai/oauth/mcp-oauth-client-metadata; the document as served (idx 70175325003,
 *   idx 57456091617, idx 71020321865) names the jwt-bearer grant besides authorization_code and
 *   refresh_token, has no application_type and no logo_uri, and uses `none`.
 * - DCR body (PostHog/posthog PR #48397, still so in claude-ai-mcp#1043): one redirect URI,
 *   token_endpoint_auth_method client_secret_post, no scope, no application_type; it then
 *   authenticates with client_secret_post at /token (claude-ai-mcp#667).
 * - Redirect: https://claude.ai/api/mcp/auth_callback, fixed and port-less (claude-ai-mcp#764).
 * - resource: the PRM `resource` with its path kept (#764); for a host-only resource a trailing
 *   slash is added (sigbit/mcp-auth-proxy#123; aakarim/OpenLore PR #17). Sent at /token too
 *   (claude-ai-mcp#654).
 * - scope: the 401 challenge's `scope` (claude-ai-mcp#840), e.g. `scope=mcp` (#764); without one,
 *   every scope the AS advertises, in order (tldraw/tldraw PR #10612; claude-ai-mcp#228). It never
 *   adds offline_access (#840). No prompt (#764).
 * - Refresh sends no scope (claude-ai-mcp#228 comment; CyberDrain/CIPP#583).
 * - Discovery carries mcp-protocol-version: 2025-11-25 (claude-ai-mcp#764 request log), and the
 *   client requires code_challenge_methods_supported (claude-ai-mcp#786, #946).
 * Unknown, assumed here:
 * - The `state` format (redacted in every capture; it is checked against an `mcp_oauth_state_…`
 *   cookie, #678). A 43-character base64url value is used as the most plausible.
 * - Whether `resource` is sent on refresh. The document profile sends it (as at /token), the
 *   registration profile leaves it out, so both plausible behaviours are replayed.
 */
import { describeClient } from './harness.ts';

const discoveryHeaders = { 'mcp-protocol-version': '2025-11-25' };

describeClient({
  client: 'Claude.ai (metadata document)',
  registration: {
    kind: 'cimd',
    path: '/oauth/mcp-oauth-client-metadata',
    document: (clientId) => ({
      client_id: clientId,
      client_name: 'Claude',
      client_uri: 'https://claude.ai',
      redirect_uris: ['https://claude.ai/api/mcp/auth_callback'],
      grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:jwt-bearer'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    }),
  },
  redirectUri: 'https://claude.ai/api/mcp/auth_callback',
  resource: { uri: 'https://mcp.example.com', scopes: ['files:read', 'files:write'], defaultScopes: ['files:read'] },
  sends: {
    // Host-only resource: Claude adds a trailing slash.
    authorizeResource: 'https://mcp.example.com/',
    tokenResource: 'https://mcp.example.com/',
    // Assumption (UNKNOWN): sent on refresh as at /token.
    refreshResource: 'https://mcp.example.com/',
    // No scope in the challenge: every scope the AS advertises, in order, without offline_access.
    scope: 'files:read files:write',
    refreshScope: undefined,
    // Assumption (UNKNOWN format).
    state: 'mBtIoV8do4ub_jya-Z4XFIQ_hdGspyhGGiqAu25ICXk',
    discoveryHeaders,
  },
  tokenAuth: 'none',
  expectedScopes: ['files:read', 'files:write'],
});

describeClient({
  client: 'Claude.ai (dynamic registration, client_secret_post)',
  registration: {
    kind: 'dcr',
    body: {
      redirect_uris: ['https://claude.ai/api/mcp/auth_callback'],
      token_endpoint_auth_method: 'client_secret_post',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      client_name: 'Claude',
    },
  },
  redirectUri: 'https://claude.ai/api/mcp/auth_callback',
  resource: { uri: 'https://mcp.example.com/mcp', scopes: ['mcp', 'mcp:admin'], defaultScopes: ['mcp'] },
  sends: {
    authorizeResource: 'https://mcp.example.com/mcp',
    tokenResource: 'https://mcp.example.com/mcp',
    // Assumption (UNKNOWN): not sent on refresh.
    refreshResource: undefined,
    // From the 401 challenge, as in claude-ai-mcp#764.
    scope: 'mcp',
    refreshScope: undefined,
    // Assumption (UNKNOWN format).
    state: 'Qm9rT1d2c3hZcFNqZ0tFbU5hV3JpVGhEZ2xPeXZtQ0k',
    discoveryHeaders,
  },
  tokenAuth: 'client_secret_post',
  expectedScopes: ['mcp'],
});
