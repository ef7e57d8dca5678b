/**
 * `gatehouse/resource-server`: protect an MCP server with Gatehouse (or any RFC 8414 / RFC 9068
 * authorization server).
 *
 * ```ts
 * import { createResourceServer } from 'gatehouse/resource-server';
 * const rs = createResourceServer({ issuer: 'https://auth.example.com', resource: 'https://mcp.example.com/mcp' });
 * // in your http handler:
 * if (await rs.serveMetadata(req, res)) return;                      // RFC 9728 metadata
 * const token = await rs.authenticate(req, res, { scopes: ['notes:read'] }); // 401/403 written for you
 * if (!token) return;
 * ```
 *
 * Implements: RFC 6750 §2.1 and §3 (bearer header, challenges), RFC 9068 §4 (JWT access-token
 * validation), RFC 8707 and the MCP authorization spec's audience binding (a token for another
 * resource is refused), RFC 9728 (protected-resource metadata, `resource_metadata` in challenges),
 * RFC 8414 (issuer discovery, exact issuer match), RFC 9449 §7 (DPoP-bound tokens), and the MCP
 * spec's scope challenges (every needed scope in one 403). What it does NOT check is listed in
 * `verify.ts`: revocation, introspection, token replay, tokens outside the Authorization header.
 */
export { AuthorizationServer, authorizationServer, type AuthorizationServerOptions, type RegistryEntry } from './authorization-server.ts';
export { challenge, type Challenge, type ChallengeOptions } from './challenge.ts';
export { checkDpopProof, type DpopRequest } from './dpop.ts';
export { TokenError, isTokenError, type TokenErrorCode } from './errors.ts';
export {
  protectedResourceMetadata,
  protectedResourceMetadataHandler,
  protectedResourceMetadataPaths,
  protectedResourceMetadataUrl,
  type ProtectedResourceMetadata,
  type ProtectedResourceMetadataOptions,
} from './metadata.ts';
export { createResourceServer, ResourceServer, toMcpAuthInfo, type McpAuthInfo, type Requirement, type ResourceServerOptions } from './resource-server.ts';
export { effectiveScopes, missingScopes, parseScopeClaim, requiredScopesForMcpMessage, type McpScopePolicy, type ScopeIncludes } from './scopes.ts';
export { DEFAULT_ALGORITHMS, readAuthorizationHeader, verifyAccessToken, type VerifiedToken, type VerifyOptions } from './verify.ts';
export { koaRequireToken, koaServeProtectedResourceMetadata, requireToken, serveProtectedResourceMetadata, type ScopesFor } from './adapters.ts';
