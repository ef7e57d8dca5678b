/**
 * The OpenAPI 3.1 description of the admin API (src/admin/api.routes.ts). A test checks that every
 * route the router serves is described here and the other way round.
 */
const error = { $ref: '#/components/responses/Error' };
const idParam = {
  name: 'id',
  in: 'path',
  required: true,
  description: 'The client_id, URL-encoded (metadata-document clients have URL client_ids).',
  schema: { type: 'string' },
};
const reasonBody = {
  content: { 'application/json': { schema: { type: 'object', properties: { reason: { type: ['string', 'null'], maxLength: 500 } } } } },
};
const client = { $ref: '#/components/schemas/Client' };
const resource = { $ref: '#/components/schemas/Resource' };
const user = { $ref: '#/components/schemas/User' };
const userChange = { description: 'The user, and how many of their sign-in sessions the change ended', content: { 'application/json': { schema: { $ref: '#/components/schemas/UserChange' } } } };
const userIdParam = { name: 'id', in: 'path', required: true, description: 'The account id.', schema: { type: 'string', format: 'uuid' } };
const scopeIncludes = {
  type: 'array',
  items: { type: 'string' },
  uniqueItems: true,
  description:
    'The narrower scopes of the same MCP server that this broader scope satisfies (e.g. notes:admin includes notes:read), for resource servers to honour; each another scope of this server, once. Cycles are allowed (equivalent scopes). Absent when none. Consent and ceilings ignore it.',
};
const scope = { type: 'object', required: ['name', 'description'], properties: { name: { type: 'string' }, description: { type: 'string' }, includes: scopeIncludes } };
const scopeList = { type: 'array', items: scope };

export const OPENAPI_DOCUMENT = {
  openapi: '3.1.0',
  info: {
    title: 'Gatehouse admin API',
    version: '1',
    description:
      'The admin console\'s operations, on the admin listener. Authenticate with a personal API token (Authorization: Bearer gh_pat_…), or with the console session cookie plus the X-CSRF-Token header on state-changing requests. Covers clients, MCP servers, users, connections, the audit trail and your API tokens.',
  },
  servers: [{ url: '/api/v1' }],
  security: [{ apiToken: [] }, { session: [] }],
  paths: {
    '/me': { get: { summary: 'Who the caller is', responses: { 200: { description: 'The caller', content: { 'application/json': { schema: { type: 'object' } } } }, 401: error } } },
    '/clients': {
      get: {
        summary: 'List clients, newest first',
        parameters: [{ name: 'status', in: 'query', schema: { type: 'string', enum: ['pending', 'approved', 'rejected', 'suspended'] } }],
        responses: { 200: { description: 'Clients', content: { 'application/json': { schema: { type: 'object', properties: { clients: { type: 'array', items: client } } } } } }, 400: error, 401: error },
      },
    },
    '/clients/{id}': {
      get: { summary: 'One client, with its usage', parameters: [idParam], responses: { 200: { description: 'The client', content: { 'application/json': { schema: client } } }, 401: error, 404: error } },
    },
    '/clients/{id}/approve': {
      post: {
        summary: 'Approve a client; its ceiling becomes exactly these MCP servers and scopes',
        parameters: [idParam],
        requestBody: {
          required: true,
          content: {
            'application/json': {
              schema: {
                type: 'object',
                required: ['ceiling'],
                properties: { ceiling: { type: 'array', items: { type: 'object', required: ['resource', 'scopes'], properties: { resource: { type: 'string', format: 'uri' }, scopes: { type: 'array', items: { type: 'string' } } } } } },
              },
            },
          },
        },
        responses: { 200: { description: 'The approved client', content: { 'application/json': { schema: client } } }, 400: error, 401: error, 403: error, 404: error },
      },
    },
    '/clients/{id}/reject': {
      post: { summary: 'Reject a client; its grants and refresh tokens are revoked', parameters: [idParam], requestBody: reasonBody, responses: { 200: { description: 'The client', content: { 'application/json': { schema: client } } }, 400: error, 401: error, 403: error, 404: error } },
    },
    '/clients/{id}/suspend': {
      post: { summary: 'Suspend a client; its grants and refresh tokens are revoked', parameters: [idParam], requestBody: reasonBody, responses: { 200: { description: 'The client', content: { 'application/json': { schema: client } } }, 400: error, 401: error, 403: error, 404: error } },
    },
    '/resources': {
      get: { summary: 'List MCP servers', responses: { 200: { description: 'MCP servers', content: { 'application/json': { schema: { type: 'object', properties: { resources: { type: 'array', items: resource } } } } } }, 401: error } },
      post: {
        summary: 'Register an MCP server',
        requestBody: {
          required: true,
          content: {
            'application/json': {
              schema: {
                type: 'object',
                required: ['uri', 'name', 'scopes'],
                properties: {
                  uri: { type: 'string', format: 'uri' },
                  name: { type: 'string' },
                  scopes: scopeList,
                  defaultScopes: { type: 'array', items: { type: 'string' } },
                  accessTokenTtl: { type: 'integer', minimum: 30, maximum: 86400 },
                },
              },
            },
          },
        },
        responses: { 201: { description: 'Registered', content: { 'application/json': { schema: resource } } }, 400: error, 401: error, 403: error },
      },
      put: {
        summary: 'Edit an MCP server: name, scopes, default scopes, access-token lifetime (never its URI)',
        description:
          'Omitted fields keep their values. `scopes` replaces the list; when it is given without `defaultScopes`, the current default scopes still offered stay defaults (none left: every scope). Each scope carries its own `includes`, so a scope given without it includes nothing; a scope that another scope still includes cannot be removed (take it out of that scope\'s `includes` in the same request). Scopes removed here disappear from ceilings and grants at their next refresh. Bad input is a 400 that changes nothing.',
        parameters: [{ name: 'uri', in: 'query', required: true, description: 'The registered URI (any spelling that canonicalises to it).', schema: { type: 'string' } }],
        requestBody: {
          required: true,
          content: {
            'application/json': {
              schema: {
                type: 'object',
                properties: {
                  name: { type: 'string' },
                  scopes: scopeList,
                  defaultScopes: { type: 'array', items: { type: 'string' } },
                  accessTokenTtl: { type: 'integer', minimum: 30, maximum: 86400 },
                },
              },
            },
          },
        },
        responses: { 200: { description: 'The MCP server as changed', content: { 'application/json': { schema: resource } } }, 400: error, 401: error, 403: error, 404: error },
      },
      delete: {
        summary: 'Unregister an MCP server',
        parameters: [{ name: 'uri', in: 'query', required: true, schema: { type: 'string' } }],
        responses: { 204: { description: 'Removed' }, 400: error, 401: error, 403: error, 404: error },
      },
    },
    '/users': {
      get: { summary: 'List users and administrators, by email (never their password hashes)', responses: { 200: { description: 'Users', content: { 'application/json': { schema: { type: 'object', properties: { users: { type: 'array', items: user } } } } } }, 401: error } },
      post: {
        summary: 'Create a user (or an administrator) with an initial password',
        requestBody: {
          required: true,
          content: {
            'application/json': {
              schema: { type: 'object', required: ['email', 'password'], properties: { email: { type: 'string', format: 'email' }, password: { type: 'string', minLength: 8 }, role: { type: 'string', enum: ['user', 'admin'], default: 'user' } } },
            },
          },
        },
        responses: { 201: { description: 'The user', content: { 'application/json': { schema: user } } }, 400: error, 401: error, 403: error },
      },
    },
    '/users/{id}/disable': {
      post: {
        summary: 'Disable a user: no sign-in, their refresh tokens stop working and their browsers are signed out (not your own account)',
        parameters: [userIdParam],
        responses: { 200: userChange, 400: error, 401: error, 403: error, 404: error },
      },
    },
    '/users/{id}/enable': {
      post: { summary: 'Enable a user again: they can sign in, and their connections work again', parameters: [userIdParam], responses: { 200: userChange, 401: error, 403: error, 404: error } },
    },
    '/users/{id}/password': {
      post: {
        summary: "Set a user's password; their browsers must sign in again",
        parameters: [userIdParam],
        requestBody: { required: true, content: { 'application/json': { schema: { type: 'object', required: ['password'], properties: { password: { type: 'string', minLength: 8 } } } } } },
        responses: { 200: userChange, 400: error, 401: error, 403: error, 404: error },
      },
    },
    '/connections': {
      get: {
        summary: 'Connections (grants users gave clients), newest first, at most 500',
        parameters: [
          { name: 'client_id', in: 'query', schema: { type: 'string' } },
          { name: 'account_id', in: 'query', description: 'A user\'s account id.', schema: { type: 'string' } },
        ],
        responses: { 200: { description: 'Connections', content: { 'application/json': { schema: { type: 'object', properties: { connections: { type: 'array', items: { $ref: '#/components/schemas/Connection' } } } } } } }, 401: error },
      },
    },
    '/connections/{grantId}': {
      delete: {
        summary: 'Revoke a connection: the grant, its refresh tokens and codes are deleted; the client\'s next refresh fails and the user is asked to consent again',
        parameters: [{ name: 'grantId', in: 'path', required: true, schema: { type: 'string' } }],
        responses: { 204: { description: 'Revoked' }, 401: error, 403: error, 404: error },
      },
    },
    '/audit': {
      get: {
        summary: 'Security events, newest first',
        parameters: [
          { name: 'event', in: 'query', schema: { type: 'string' } },
          { name: 'client_id', in: 'query', schema: { type: 'string' } },
          { name: 'account_id', in: 'query', schema: { type: 'string' } },
          { name: 'before', in: 'query', description: 'Only events with a smaller id (paging).', schema: { type: 'string' } },
          { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 500, default: 100 } },
        ],
        responses: { 200: { description: 'Events', content: { 'application/json': { schema: { type: 'object', properties: { events: { type: 'array', items: { type: 'object' } } } } } } }, 400: error, 401: error },
      },
    },
    '/tokens': {
      get: { summary: 'Your personal API tokens (never their values)', responses: { 200: { description: 'Tokens', content: { 'application/json': { schema: { type: 'object' } } } }, 401: error } },
      post: {
        summary: 'Create a personal API token; the value is returned once',
        requestBody: { required: true, content: { 'application/json': { schema: { type: 'object', required: ['name'], properties: { name: { type: 'string', maxLength: 100 } } } } } },
        responses: { 201: { description: 'The token, shown once', content: { 'application/json': { schema: { type: 'object' } } } }, 400: error, 401: error, 403: error },
      },
    },
    '/tokens/{id}': {
      delete: { summary: 'Revoke an API token (any administrator\'s: audited with its owner)', parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string', format: 'uuid' } }], responses: { 204: { description: 'Revoked' }, 401: error, 403: error, 404: error } },
    },
  },
  components: {
    securitySchemes: {
      apiToken: { type: 'http', scheme: 'bearer', description: 'A personal admin API token (gh_pat_…).' },
      session: { type: 'apiKey', in: 'cookie', name: 'gh_admin', description: 'The console session (__Host-gh_admin under https); send X-CSRF-Token on POST, PUT and DELETE.' },
    },
    responses: {
      Error: {
        description: 'An error',
        content: { 'application/json': { schema: { type: 'object', required: ['error'], properties: { error: { type: 'string' }, error_description: { type: 'string' } } } } },
      },
    },
    schemas: {
      Client: {
        type: 'object',
        properties: {
          clientId: { type: 'string' },
          name: { type: 'string' },
          status: { type: 'string', enum: ['pending', 'approved', 'rejected', 'suspended'] },
          ceiling: { type: ['object', 'null'], additionalProperties: { type: 'array', items: { type: 'string' } }, description: 'MCP server URI → scopes; null: no ceiling.' },
          registrationMethod: { type: 'string', enum: ['dcr', 'cimd'] },
          redirectUris: { type: 'array', items: { type: 'string' } },
          approvedRedirectUris: { type: ['array', 'null'], items: { type: 'string' } },
          sourceIp: { type: ['string', 'null'] },
          userAgent: { type: ['string', 'null'] },
          statusReason: { type: ['string', 'null'] },
          statusChangedAt: { type: ['string', 'null'], format: 'date-time' },
          statusChangedBy: { type: ['string', 'null'] },
          createdAt: { type: 'string', format: 'date-time' },
          metadata: { type: 'object' },
        },
      },
      Resource: {
        type: 'object',
        properties: {
          id: { type: 'string', format: 'uuid', description: 'Names it (as does its URI) in its public metadata document: GET /resources/{id}/protected-resource-metadata on the public listener.' },
          uri: { type: 'string' },
          name: { type: 'string' },
          scopes: scopeList,
          defaultScopes: { type: 'array', items: { type: 'string' } },
          accessTokenTtl: { type: 'integer' },
        },
      },
      User: {
        type: 'object',
        properties: {
          id: { type: 'string', format: 'uuid' },
          email: { type: 'string' },
          role: { type: 'string', enum: ['user', 'admin'] },
          disabledAt: { type: ['string', 'null'], format: 'date-time' },
          createdAt: { type: 'string', format: 'date-time' },
        },
      },
      UserChange: {
        allOf: [{ $ref: '#/components/schemas/User' }, { type: 'object', properties: { endedSessions: { type: 'integer', description: 'Sign-in sessions (Gatehouse and console) the change ended.' } } }],
      },
      Connection: {
        type: 'object',
        properties: {
          grantId: { type: 'string' },
          accountId: { type: 'string' },
          email: { type: ['string', 'null'], description: 'null when the account no longer exists.' },
          accountDisabled: { type: 'boolean' },
          clientId: { type: 'string' },
          clientName: { type: ['string', 'null'], description: 'null when the client no longer exists.' },
          resources: { type: 'object', additionalProperties: { type: 'array', items: { type: 'string' } }, description: 'MCP server URI → granted scopes.' },
          grantedAt: { type: 'string', format: 'date-time' },
          expiresAt: { type: ['string', 'null'], format: 'date-time' },
          lastUsedAt: { type: ['string', 'null'], format: 'date-time' },
        },
      },
    },
  },
} as const;
