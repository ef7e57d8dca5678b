/**
 * The TypeScript SDK's example OAuth client (modelcontextprotocol/typescript-sdk): v1
 * src/examples/client/simpleOAuthClient.ts, v2 examples/client/src/simpleOAuthClient.ts and
 * simpleOAuthClientProvider.ts; the wire behaviour is the SDK's (v1 src/client/auth.ts, v2
 * packages/client/src/client/auth.ts).
 *
 * - Registration: DCR, `clientMetadata` posted verbatim (SDK `registerClient`). Example body:
 *   {"client_name":"Simple OAuth MCP Client","redirect_uris":["http://localhost:8090/callback"],
 *   "grant_types":["authorization_code","refresh_token"],"response_types":["code"],
 *   "token_endpoint_auth_method":"client_secret_post"} (v2 example); the v1 example adds
 *   "scope":"mcp:tools". No application_type, client_uri or logo_uri. The v1 example's hard-coded
 *   CIMD URL points at a document whose content is UNKNOWN, and the v2 example takes a CIMD URL
 *   only from the command line, so no CIMD profile here.
 * - Redirect: http://localhost:8090/callback, fixed port (`CALLBACK_PORT = 8090`), same string
 *   registered and used.
 * - state: the example provider has no `state()`, so no state parameter is sent (both examples;
 *   observed in curityio/mcp-authorization-secured-api clients/typescript-sdk-client/README.md).
 * - resource: the PRM `resource` as `new URL(...).href` (SDK `selectResourceURL`), so an
 *   origin-only resource gains a trailing slash: https://mcp.example.com/. Sent at /authorize, at
 *   /token and on refresh (SDK; opencode#34592 quotes SDK 1.29.0 sending it on refresh).
 * - scope: v2 = the WWW-Authenticate scope, else all PRM scopes_supported; v1 = the scope
 *   argument, else `clientMetadata.scope` (mcp:tools in the v1 example). No offline_access, hence
 *   no prompt=consent. Refresh sends no `scope` (SDK `refreshAuthorization`).
 * - Token auth: v2 uses the `token_endpoint_auth_method` the DCR response returns when the AS lists
 *   it: client_secret_post, client_id and client_secret in the body (SDK `selectClientAuthMethod`).
 *   The v1 SDK read (@1def3703, @037fb1d7) ignores the registered method and prefers
 *   client_secret_basic when the AS lists it, so it registers client_secret_post and then sends
 *   HTTP Basic. (oidc-provider 9.13.3, lib/shared/client_auth.js, accepts a client_secret_basic or
 *   client_secret_post client's secret by either mechanism, so Gatehouse accepts that too.) The
 *   second profile replays exactly that: the v1 body, then Basic at /token.
 */
import { describeClient } from './harness.ts';

const EXAMPLE_DCR_BODY = {
  client_name: 'Simple OAuth MCP Client',
  redirect_uris: ['http://localhost:8090/callback'],
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_post',
};

describeClient({
  client: 'TypeScript SDK example (v2)',
  registration: { kind: 'dcr', body: EXAMPLE_DCR_BODY },
  redirectUri: 'http://localhost:8090/callback',
  resource: { uri: 'https://mcp.example.com', scopes: ['mcp:tools', 'mcp:prompts'], defaultScopes: ['mcp:tools'] },
  sends: {
    authorizeResource: 'https://mcp.example.com/',
    tokenResource: 'https://mcp.example.com/',
    refreshResource: 'https://mcp.example.com/',
    // All of the PRM's scopes_supported.
    scope: 'mcp:tools mcp:prompts',
    refreshScope: undefined,
    state: undefined,
  },
  tokenAuth: 'client_secret_post',
  expectedScopes: ['mcp:tools', 'mcp:prompts'],
});

describeClient({
  client: 'TypeScript SDK example (v1 registration body)',
  registration: { kind: 'dcr', body: { ...EXAMPLE_DCR_BODY, scope: 'mcp:tools' } },
  redirectUri: 'http://localhost:8090/callback',
  resource: { uri: 'https://mcp.example.com', scopes: ['mcp:tools', 'mcp:prompts'], defaultScopes: ['mcp:prompts'] },
  sends: {
    authorizeResource: 'https://mcp.example.com/',
    tokenResource: 'https://mcp.example.com/',
    refreshResource: 'https://mcp.example.com/',
    scope: 'mcp:tools',
    refreshScope: undefined,
    state: undefined,
  },
  // Registered client_secret_post, authenticates with Basic (v1 SDK `selectClientAuthMethod`).
  tokenAuth: 'client_secret_basic',
  expectedScopes: ['mcp:tools'],
});
