/**
 * Claude Code (Anthropic's CLI). Closed source: the facts come from its issue tracker and from
 * captures other servers published.
 *
 * - Uses its Client ID Metadata Document when the AS advertises client_id_metadata_document_supported
 *   (and `none` among the auth methods); client_id https://claude.ai/oauth/claude-code-client-metadata
 *   (anthropics/claude-code#44388, #64705, #42301). The document lists port-less loopback redirect
 *   URIs, has no application_type (#44378), and uses `none`.
 * - Sends the redirect with an ephemeral port: http://localhost:<port>/callback (#10439, #12077) or
 *   127.0.0.1 (#64705, #86233); port-less registration vs. ported use broke strict servers (#64705).
 * - state: 43 characters of base64url (#10572, #12077). Scopes: those named by the 401 challenge
 *   or the protected-resource metadata, plus offline_access when the AS lists it
 *   (basicmachines-co/basic-memory#1283 quoting the maintainers); #10572 shows prompt=consent with it.
 * - resource: sent on authorize, token and refresh (LanternOps/breeze#2363); a trailing slash on
 *   host-only URIs was reported (#52871 via #90497). Refresh omits scope (#89862).
 * - Falls back to DCR with {"client_name":"Claude Code (<server>)", "redirect_uris":
 *   ["http://localhost:<port>/callback"], grant_types [authorization_code, refresh_token],
 *   response_types [code], token_endpoint_auth_method none}: the second profile below.
 * Unknown: whether it sends MCP-Protocol-Version on discovery; whether it requires
 * code_challenge_methods_supported (advertised anyway).
 */
import { describeClient } from './harness.ts';

describeClient({
  client: 'Claude Code (metadata document)',
  registration: {
    kind: 'cimd',
    path: '/oauth/claude-code-client-metadata',
    document: (clientId) => ({
      client_id: clientId,
      client_name: 'Claude Code',
      redirect_uris: ['http://localhost/callback', 'http://127.0.0.1/callback'],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    }),
  },
  redirectUri: 'http://localhost:59430/callback',
  resource: { uri: 'https://mcp.example.com', scopes: ['files:read', 'files:write'], defaultScopes: ['files:read'] },
  sends: {
    authorizeResource: 'https://mcp.example.com/',
    tokenResource: 'https://mcp.example.com/',
    refreshResource: 'https://mcp.example.com/',
    scope: 'files:read files:write offline_access',
    refreshScope: undefined,
    state: 'Y-nto_D7WTTRRvopM-XTEAgI3fcyf9FY9X9Wdm8G6dk',
    extraAuthorizeParams: { prompt: 'consent' },
  },
  tokenAuth: 'none',
  expectedScopes: ['files:read', 'files:write'],
});

describeClient({
  client: 'Claude Code (dynamic registration)',
  registration: {
    kind: 'dcr',
    body: {
      client_name: 'Claude Code (example-mcp)',
      redirect_uris: ['http://localhost:56648/callback'],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    },
  },
  redirectUri: 'http://localhost:56648/callback',
  resource: { uri: 'https://mcp.example.com/mcp', scopes: ['mcp:tools'], defaultScopes: ['mcp:tools'] },
  sends: {
    authorizeResource: 'https://mcp.example.com/mcp',
    tokenResource: 'https://mcp.example.com/mcp',
    refreshResource: 'https://mcp.example.com/mcp',
    // No scope in the challenge nor in the resource metadata: no scope parameter at all.
    scope: undefined,
    state: 'h_igddrux1NNvbYUb5ZIFipUUsQhsnIxNYTYzRNR98g',
  },
  tokenAuth: 'none',
  expectedScopes: ['mcp:tools'],
});
