/**
 * ChatGPT connectors (Apps SDK, developer mode): the OAuth client runs server-side at chatgpt.com.
 * Closed source: the facts come from OpenAI's docs (https://developers.openai.com/apps-sdk/build/auth)
 * and from captures other servers published. "idx <n>" is a public file found by content whose
 * repo/path the index did not return.
 *
 * - Prefers a Client ID Metadata Document over DCR (apps-sdk/build/auth; idx 70869763855). The
 *   client_id is per connector, https://chatgpt.com/oauth/{callback_id}/client.json (idx 66223224067,
 *   idx 64087663342), and that document names the per-connector redirect
 *   https://chatgpt.com/connector/oauth/{callback_id} (idx 66223224067; BasedHardware/omi#8824;
 *   makeplane/plane-mcp-server PR #165). Otherwise it has the shape of the stable document (idx
 *   69602918295): token_endpoint_auth_method private_key_jwt with jwks_uri and
 *   token_endpoint_auth_signing_alg RS256, the non-RFC 7591 field
 *   token_endpoint_auth_methods_supported ["none","private_key_jwt"], a logo_uri, no
 *   application_type and no scope.
 * - At /token it signs an RS256 client assertion and "does not negotiate down" to `none`
 *   (engram-app/Engram PR #1637, #1633).
 * - Authorization request (logto-io/logto#9627; community.openai.com thread "oauth missing scopes
 *   after reconnect"): resource = the PRM `resource` verbatim, no trailing slash added (also the
 *   zh-Hans plugins/build/auth docs); scope = every scope the AS advertises, offline_access
 *   included, as in the logto capture `scope=openid email offline_access profile` (here followed by
 *   the MCP server's own scopes); ui_locales=en-US; no prompt. state is `oauth_s_` plus ~32
 *   lowercase alphanumerics (community thread).
 * - On reconnect it calls /authorize with no `scope` at all (community thread): the second
 *   profile. That capture was of a DCR client using the legacy redirect
 *   https://chatgpt.com/connector_platform_oauth_redirect; its DCR client is public, `none`
 *   (garrytan/gbrain PR #894; stytch.com Apps SDK guide).
 * Unknown, assumed here:
 * - The DCR body (no raw capture exists; client_name, grant_types, scope, application_type are all
 *   unknown). A minimal plausible public-client body is used: the redirect, `none`, the
 *   authorization_code and refresh_token grants (it does refresh when given a refresh token,
 *   logto#9627), response_types code and client_name "ChatGPT".
 * - `resource` at /token and on refresh (the docs say "Echo the resource parameter throughout the
 *   OAuth flow", apps-sdk/build/auth): assumed sent, verbatim. `scope` on refresh: assumed not sent.
 * - MCP-Protocol-Version on discovery: not sent here.
 * - Which redirect a CIMD client picks when the AS supports RFC 9207 (idx 70869763855 says the
 *   stable one then): the per-connector document is replayed, so its own redirect is used.
 */
import { describeClient } from './harness.ts';

const CALLBACK_ID = 'j0wKlDBsmsUM';

describeClient({
  client: 'ChatGPT (metadata document, private_key_jwt)',
  registration: {
    kind: 'cimd',
    path: `/oauth/${CALLBACK_ID}/client.json`,
    document: (clientId, jwksUri) => ({
      client_id: clientId,
      client_uri: 'https://chatgpt.com/',
      redirect_uris: [`https://chatgpt.com/connector/oauth/${CALLBACK_ID}`],
      token_endpoint_auth_method: 'private_key_jwt',
      token_endpoint_auth_methods_supported: ['none', 'private_key_jwt'],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      client_name: 'ChatGPT',
      logo_uri: 'https://persistent.oaistatic.com/sonic/misc/openai-logo.png',
      token_endpoint_auth_signing_alg: 'RS256',
      jwks_uri: jwksUri,
    }),
  },
  redirectUri: `https://chatgpt.com/connector/oauth/${CALLBACK_ID}`,
  resource: { uri: 'https://mcp.example.com/mcp', scopes: ['worker:read', 'time-off:read'], defaultScopes: ['worker:read'] },
  sends: {
    authorizeResource: 'https://mcp.example.com/mcp',
    // Assumption (UNKNOWN): echoed verbatim at /token and on refresh.
    tokenResource: 'https://mcp.example.com/mcp',
    refreshResource: 'https://mcp.example.com/mcp',
    scope: 'openid email offline_access profile worker:read time-off:read',
    // Assumption (UNKNOWN): no scope on refresh.
    refreshScope: undefined,
    state: 'oauth_s_691b57560b648191a5a85lt8e30e0894',
    extraAuthorizeParams: { ui_locales: 'en-US' },
  },
  tokenAuth: 'private_key_jwt',
  expectedScopes: ['worker:read', 'time-off:read'],
});

describeClient({
  client: 'ChatGPT (dynamic registration, reconnect without scope)',
  registration: {
    kind: 'dcr',
    // Assumption: the exact DCR body is UNKNOWN; a minimal plausible public-client body.
    body: {
      client_name: 'ChatGPT',
      redirect_uris: ['https://chatgpt.com/connector_platform_oauth_redirect'],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    },
  },
  redirectUri: 'https://chatgpt.com/connector_platform_oauth_redirect',
  resource: { uri: 'https://mcp.example.com/mcp', scopes: ['worker:read', 'time-off:read'], defaultScopes: ['worker:read'] },
  sends: {
    authorizeResource: 'https://mcp.example.com/mcp',
    tokenResource: 'https://mcp.example.com/mcp',
    refreshResource: 'https://mcp.example.com/mcp',
    // Reconnect: no scope parameter at all; Gatehouse must apply the default scopes.
    scope: undefined,
    refreshScope: undefined,
    state: 'oauth_s_691b55f5b11481919ddp59nge4998443f',
  },
  tokenAuth: 'none',
  expectedScopes: ['worker:read'],
});
