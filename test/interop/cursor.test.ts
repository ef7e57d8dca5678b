/**
 * Cursor (IDE, cursor-agent CLI, Cloud Agents). Closed source. The main source is a measured
 * interop report against a Nextcloud MCP connector (2026-08-20) holding Cursor's own stored
 * attempt file, its extension log and the server log: public file idx 60050183869 (found by
 * content; the index did not return its repo/path), called "NC-report" below.
 *
 * - Registers with DCR; no CIMD was observed (Altinity/altinity-mcp#169). The body (NC-report
 *   §3.1/§4): three redirect URIs in one request (also erp-mafia/accounted PR #2225), public client
 *   `none` (also different-ai/openwork PR #3059), client_name "Cursor", a logo_uri, no scope and
 *   no application_type.
 * - At /authorize it uses the FIRST URI of its own list, cursor://anysphere.cursor-mcp/oauth/callback,
 *   without reading the registration response back (NC-report §6). The current desktop build uses
 *   the fixed http://localhost:8787/callback instead (glama.ai Echsecutor/idealo-proxy citing
 *   https://cursor.com/docs/mcp): the second profile. All three URIs are used exactly as registered.
 * - resource: the PRM `resource` with its path, no trailing slash (NC-report §6). scope: the 401
 *   challenge's `scope` (NC-report §2), no offline_access added; no prompt (NC-report §6).
 * - state: base64 of a JSON object {"id":"user-<server>","owner":{"workspaceId":"empty-window"},
 *   "attemptId":"<uuid>"} (NC-report §6).
 * Unknown, assumed here:
 * - Standard or url-safe base64 for state: standard is assumed (the worse case for an AS). With
 *   ASCII-only JSON, standard base64 can yield `+` or `/` only from `>`, `?` or `~` bytes, so the
 *   server name is chosen to make the JSON 115 bytes long and the state end in `==` padding.
 * - The logo_uri host is elided in the NC-report ("https://…/cursorlogomcpv3.svg"); the full URL
 *   below is the one Cursor's extension code names, as quoted in other public files (idx
 *   68883741109, idx 69212109168; not from the facts file, and irrelevant to the flow).
 * - `resource` at /token and on refresh, and refresh behaviour generally (no capture reached
 *   /token): assumed the same `resource` as at /authorize, and no `scope` on refresh.
 * - MCP-Protocol-Version on discovery: not sent here.
 */
import { describeClient } from './harness.ts';

const registrationBody = {
  redirect_uris: [
    'cursor://anysphere.cursor-mcp/oauth/callback',
    'https://www.cursor.com/agents/mcp/oauth/callback',
    'http://localhost:8787/callback',
  ],
  token_endpoint_auth_method: 'none',
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  client_name: 'Cursor',
  logo_uri: 'https://ptht05hbb1ssoooe.public.blob.vercel-storage.com/assets/uploads/cursorlogomcpv3.svg',
};

/** Cursor's state: standard base64 of its attempt JSON (NC-report §6). */
function cursorState(attemptId: string): string {
  return Buffer.from(JSON.stringify({ id: 'user-example-mcp', owner: { workspaceId: 'empty-window' }, attemptId })).toString('base64');
}

const resource = { uri: 'https://mcp.example.com/mcp', scopes: ['mcp:tools', 'mcp:admin'], defaultScopes: ['mcp:tools'] };

describeClient({
  client: 'Cursor (dynamic registration, cursor:// callback)',
  registration: { kind: 'dcr', body: registrationBody },
  redirectUri: 'cursor://anysphere.cursor-mcp/oauth/callback',
  resource,
  sends: {
    authorizeResource: 'https://mcp.example.com/mcp',
    // Assumption (UNKNOWN): the same resource at /token and on refresh.
    tokenResource: 'https://mcp.example.com/mcp',
    refreshResource: 'https://mcp.example.com/mcp',
    // From the 401 challenge (WWW-Authenticate scope="mcp:tools").
    scope: 'mcp:tools',
    refreshScope: undefined,
    // eyJpZCI6…ZjNDgifQ== : ends in `==`.
    state: cursorState('3f2c1a9e-8b4d-4e67-9c1f-5a7d2e0b6c48'),
  },
  tokenAuth: 'none',
  expectedScopes: ['mcp:tools'],
});

describeClient({
  client: 'Cursor (dynamic registration, localhost:8787 callback)',
  registration: { kind: 'dcr', body: registrationBody },
  redirectUri: 'http://localhost:8787/callback',
  resource,
  sends: {
    authorizeResource: 'https://mcp.example.com/mcp',
    tokenResource: 'https://mcp.example.com/mcp',
    refreshResource: 'https://mcp.example.com/mcp',
    scope: 'mcp:tools',
    refreshScope: undefined,
    state: cursorState('b7e4d2a1-6c3f-4a8e-9d5b-1f0e7c2a9b36'),
  },
  tokenAuth: 'none',
  expectedScopes: ['mcp:tools'],
});
