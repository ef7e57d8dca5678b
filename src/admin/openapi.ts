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

export const OPENAPI_DOCUMENT = {
  openapi: '3.1.0',
  info: {
    title: 'Gatehouse admin API',
    version: '1',
    description:
      'The admin console\'s operations, on the admin listener. Authenticate with a personal API token (Authorization: Bearer gh_pat_…), or with the console session cookie plus the X-CSRF-Token header on state-changing requests.',
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
      get: { summary: 'List MCP servers', responses: { 200: { description: 'MCP servers', content: { 'application/json': { schema: { type: 'object', properties: { resources: { type: 'array', items: { $ref: '#/components/schemas/Resource' } } } } } } }, 401: error } },
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
                  scopes: { type: 'array', items: { type: 'object', required: ['name', 'description'], properties: { name: { type: 'string' }, description: { type: 'string' } } } },
                  defaultScopes: { type: 'array', items: { type: 'string' } },
                  accessTokenTtl: { type: 'integer', minimum: 30, maximum: 86400 },
                },
              },
            },
          },
        },
        responses: { 201: { description: 'Registered', content: { 'application/json': { schema: { $ref: '#/components/schemas/Resource' } } } }, 400: error, 401: error, 403: error },
      },
      delete: {
        summary: 'Unregister an MCP server',
        parameters: [{ name: 'uri', in: 'query', required: true, schema: { type: 'string' } }],
        responses: { 204: { description: 'Removed' }, 400: error, 401: error, 403: error, 404: error },
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
      delete: { summary: 'Revoke one of your API tokens', parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string', format: 'uuid' } }], responses: { 204: { description: 'Revoked' }, 401: error, 403: error, 404: error } },
    },
  },
  components: {
    securitySchemes: {
      apiToken: { type: 'http', scheme: 'bearer', description: 'A personal admin API token (gh_pat_…).' },
      session: { type: 'apiKey', in: 'cookie', name: 'gh_admin', description: 'The console session (__Host-gh_admin under https); send X-CSRF-Token on POST and DELETE.' },
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
          uri: { type: 'string' },
          name: { type: 'string' },
          scopes: { type: 'array', items: { type: 'object', properties: { name: { type: 'string' }, description: { type: 'string' } } } },
          defaultScopes: { type: 'array', items: { type: 'string' } },
          accessTokenTtl: { type: 'integer' },
        },
      },
    },
  },
} as const;
