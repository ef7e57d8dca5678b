/**
 * VS Code (microsoft/vscode), desktop loopback flow. Open source; the facts come from these files
 * of microsoft/vscode (stored versions, commit where known) and from its issues and PRs:
 *   [A] src/vs/base/common/oauth.ts @ 05f882b0: DCR body (`fetchDynamicRegistration`), discovery.
 *   [B] src/vs/workbench/api/common/extHostAuthentication.ts (DynamicAuthProvider): token and refresh.
 *   [C] src/vs/workbench/api/node/extHostAuthentication.ts @ 0e447143: loopback server flow.
 *   [D] src/vs/workbench/api/common/extHostMcp.ts (`createAuthMetadata`): 401 handling, scopes.
 *
 * - Uses a Client ID Metadata Document when the AS supports it, else DCR (microsoft/vscode PR
 *   #271403, fixes #270811). client_id https://vscode.dev/oauth/client-metadata.json (issue
 *   #298300; third-party copies of the live document, index ids 60912845839, 68425250152). The
 *   document (as captured in index id 68425250152): application_type native, the device_code grant
 *   besides authorization_code and refresh_token, `none`, redirect_uris http://127.0.0.1:33418/ and
 *   https://vscode.dev/redirect.
 * - DCR body [A]: client_name, client_uri https://code.visualstudio.com, grant_types, response_types
 *   code, four redirect URIs (two vscode.dev ones, port-less http://127.0.0.1/ and
 *   http://127.0.0.1:33418/), scope (the PRM scopes_supported on (re-)registration, [B]
 *   `_generateNewClientId`), `none`, application_type native.
 * - Redirect: the loopback server listens on 127.0.0.1:33418 and, when that port is busy, on a
 *   random port, so it sends http://127.0.0.1:<random>/ [C] `LoopbackAuthServer`; strict servers
 *   fail that (microsoft/vscode#278512; ProfessionalWiki/MediaWiki-MCP-Server#452). The
 *   registration profile replays the random port against the port-less registered URI.
 * - Authorize [B], [C]: resource = the PRM `resource` verbatim; scope = the challenge's `scope`,
 *   else all PRM scopes_supported [D]; no offline_access, no prompt. Loopback state is
 *   randomBytes(16).toString('base64'): 24 characters of standard base64 with + / = [C]; observed
 *   `state=gXVXo0%2FiMD8WMolDHKxSTg%3D%3D` with `scope=mcp-access` (index id 53772236371).
 * - Token and refresh: form POST with client_id (`none`); `resource` on the code exchange and on
 *   refresh since microsoft/vscode PR #261815 (fixes #261364); refresh sends no scope [B].
 * - Discovery: MCP-Protocol-Version is sent on AS-metadata requests only in the MCP-origin
 *   fallback [A], [D], so not here.
 * Differences from a live run, and assumptions:
 * - [A] sends grant_types = AS grant_types_supported ∩ its three grants, all three only when the AS
 *   omits grant_types_supported. Gatehouse advertises [authorization_code, refresh_token], so a
 *   current VS Code would send just those two; the body below keeps the device_code grant (what an
 *   AS without grant_types_supported receives) so that Gatehouse's handling of it is exercised.
 * - Whether current builds try the loopback flow before the vscode.dev URL-handler flow is
 *   UNKNOWN; the loopback flow is assumed (it is what the CIMD log above shows).
 */
import { describeClient } from './harness.ts';

describeClient({
  client: 'VS Code (metadata document, loopback 33418)',
  registration: {
    kind: 'cimd',
    path: '/oauth/client-metadata.json',
    document: (clientId) => ({
      client_name: 'Visual Studio Code',
      logo_uri: 'https://code.visualstudio.com/assets/branding/code-stable.png',
      grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      application_type: 'native',
      client_id: clientId,
      client_uri: 'https://vscode.dev/product',
      redirect_uris: ['http://127.0.0.1:33418/', 'https://vscode.dev/redirect'],
    }),
  },
  redirectUri: 'http://127.0.0.1:33418/',
  resource: { uri: 'https://mcp.example.com/mcp', scopes: ['mcp-access'], defaultScopes: ['mcp-access'] },
  sends: {
    authorizeResource: 'https://mcp.example.com/mcp',
    tokenResource: 'https://mcp.example.com/mcp',
    refreshResource: 'https://mcp.example.com/mcp',
    scope: 'mcp-access',
    refreshScope: undefined,
    state: 'gXVXo0/iMD8WMolDHKxSTg==',
  },
  tokenAuth: 'none',
  expectedScopes: ['mcp-access'],
});

describeClient({
  client: 'VS Code (dynamic registration, random loopback port)',
  registration: {
    kind: 'dcr',
    body: {
      client_name: 'Visual Studio Code',
      client_uri: 'https://code.visualstudio.com',
      grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
      response_types: ['code'],
      redirect_uris: ['https://insiders.vscode.dev/redirect', 'https://vscode.dev/redirect', 'http://127.0.0.1/', 'http://127.0.0.1:33418/'],
      scope: 'files:read files:write',
      token_endpoint_auth_method: 'none',
      application_type: 'native',
    },
  },
  // Port 33418 was busy: the loopback server took a random port (microsoft/vscode#278512).
  redirectUri: 'http://127.0.0.1:51234/',
  resource: { uri: 'https://mcp.example.com/mcp', scopes: ['files:read', 'files:write'], defaultScopes: ['files:read'] },
  sends: {
    authorizeResource: 'https://mcp.example.com/mcp',
    tokenResource: 'https://mcp.example.com/mcp',
    refreshResource: 'https://mcp.example.com/mcp',
    // No scope in the challenge: all of the PRM's scopes_supported.
    scope: 'files:read files:write',
    refreshScope: undefined,
    state: 'bx2PgZnABRtfZP+W/cAxbA==',
  },
  tokenAuth: 'none',
  expectedScopes: ['files:read', 'files:write'],
});
