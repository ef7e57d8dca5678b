/**
 * Property-based fuzzing (fast-check) of the endpoints an anonymous attacker can reach: dynamic
 * client registration (structured metadata and raw bodies) and the authorization endpoint, over
 * real HTTP with a real database.
 *
 * Every property runs with a fixed seed so failures reproduce; set FUZZ_SEED to explore others.
 * fast-check prints the seed, path and the shrunk counterexample when a property fails.
 */
import { generateKeyPairSync } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { seed, startTestApp, type TestApp } from '../support/app.ts';
import { pkcePair, REDIRECT_URI, registerClient } from '../support/oauth.ts';

const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : 20240611;
const RESOURCE = 'https://mcp.example.com';
const HTTPS_REDIRECT_URI = 'https://app.example.com/oauth/callback';
const PRIVATE_USE_REDIRECT_URI = 'com.example.app:/oauth/callback';

let app: TestApp;
/** client_id → the redirect URIs it registered. */
const registered = new Map<string, string[]>();

beforeAll(async () => {
  app = await startTestApp();
  await seed(app);
  for (const uris of [[REDIRECT_URI], [HTTPS_REDIRECT_URI], [PRIVATE_USE_REDIRECT_URI]]) {
    const client = await registerClient(app.issuer, { redirect_uris: uris });
    registered.set(client.client_id as string, uris);
  }
});
afterAll(() => app?.close());

function runs(n: number) {
  return { numRuns: n, seed: SEED, endOnFailure: false, interruptAfterTimeLimit: 20_000, markInterruptAsFailure: false } as const;
}

async function countClients(): Promise<number> {
  const row = await app.db
    .selectFrom('clients')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/** Rows that only a completed sign-in and consent may create. */
async function countGrantedPayloads(): Promise<number> {
  const row = await app.db
    .selectFrom('oidc_payloads')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('model', 'in', ['Grant', 'AuthorizationCode', 'AccessToken', 'RefreshToken'])
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c));
const controlChar = fc.integer({ min: 0, max: 0x1f }).map((c) => String.fromCharCode(c));

/**
 * Characters PostgreSQL refuses in text or jsonb (issue 15 §7, docs/security.md I-37): NUL and
 * unpaired surrogates, alone, at either end, or inside an otherwise ordinary value.
 */
const refusedCharacter = fc.constantFrom('\u0000', '\ud800', '\udbff', '\udc00', '\udfff');
const withRefusedCharacter = fc
  .tuple(fc.string({ maxLength: 12 }), refusedCharacter, fc.string({ maxLength: 12 }))
  .map(([a, c, b]) => `${a}${c}${b}`);

/** Strings an attacker would try: unicode, control characters, NUL, lone surrogates, very long. */
const hostileString: fc.Arbitrary<string> = fc.oneof(
  withRefusedCharacter,
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: 'binary-ascii', maxLength: 40 }),
  fc.string({ unit: fc.oneof(loneSurrogate, controlChar, fc.constantFrom('\u202e', '\ufeff', '\u0000', '<', '"', "'", '\\', '%', '&')), maxLength: 20 }),
  fc.constantFrom('', ' ', '\u0000', '\ud800', '\udc00', 'a\u0000b', 'x\udbff', 'null', 'undefined', '__proto__', 'constructor', '<script>alert(1)</script>', '${7*7}', '{{7*7}}', "'; drop table clients; --"),
  fc.integer({ min: 190, max: 3000 }).map((n) => 'a'.repeat(n)),
  fc.constant('\u{1F600}'.repeat(150)),
);

const scheme = fc.constantFrom('https', 'http', 'HTTP', 'javascript', 'JavaScript', 'data', 'file', 'vbscript', 'blob', 'about', 'ws', 'wss', 'ftp', 'com.example.app', 'cursor', 'vscode', 'x', '1abc');
const host = fc.constantFrom(
  '127.0.0.1',
  'localhost',
  '[::1]',
  '127.0.0.2',
  '0.0.0.0',
  'example.com',
  'evil.example',
  '10.0.0.1',
  '169.254.169.254',
  '*.example.com',
  'user:pass@127.0.0.1',
  'user@example.com',
  'xn--80ak6aa92e.com',
  'exämple.com',
  '127.0.0.1.evil.example',
  '',
);
const port = fc.option(fc.oneof(fc.integer({ min: 0, max: 65535 }), fc.constantFrom(99999, -1)).map((p) => `:${p}`), { nil: '' });
const path = fc.oneof(fc.constantFrom('', '/', '/callback', '/cb/../../evil', '//evil.example/x', '/%2e%2e/', '/*', '/a b'), hostileString.map((s) => `/${s.slice(0, 30)}`));
const query = fc.option(fc.constantFrom('?a=1', '?redirect=https://evil.example', '?', '?code=x&state=y'), { nil: '' });
const fragment = fc.option(fc.constantFrom('#', '#frag', '#access_token=x'), { nil: '' });

const builtUri = fc.tuple(scheme, host, port, path, query, fragment).map(([s, h, p, pa, q, f]) =>
  s.startsWith('com.') || s === 'cursor' || s === 'vscode' ? `${s}:${pa || '/'}${q}${f}` : `${s}://${h}${p}${pa}${q}${f}`,
);
const fixedUri = fc.constantFrom(
  REDIRECT_URI,
  'http://127.0.0.1/callback',
  'http://localhost:3000/cb',
  'http://[::1]:8080/cb',
  'https://app.example.com/cb',
  'https://*.example.com/cb',
  'https://app.example.com/cb#x',
  'http://example.com/cb',
  'javascript:alert(document.domain)',
  'data:text/html,<script>alert(1)</script>',
  'file:///etc/passwd',
  'com.example.app:/oauth',
  'cursor://anysphere.cursor-retrieval/oauth/callback',
  'https://',
  'http://',
  '//evil.example/cb',
  '/relative',
  'https://user:pw@app.example.com/cb',
  ' https://app.example.com/cb',
  'https://app.example.com/cb\n',
  'https://app.example.com/\u0000',
);
const uri: fc.Arbitrary<string> = fc.oneof(fixedUri, builtUri, hostileString);

/** Arbitrary JSON values, nesting included. */
const junk: fc.Arbitrary<unknown> = fc.oneof(
  { maxDepth: 3 },
  fc.constant(null),
  fc.boolean(),
  fc.integer(),
  fc.double(),
  hostileString,
  fc.jsonValue({ maxDepth: 3 }),
  fc.array(hostileString, { maxLength: 4 }),
  fc.dictionary(hostileString, fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }),
);

function field<T>(valid: fc.Arbitrary<T>): fc.Arbitrary<unknown> {
  return fc.oneof({ weight: 3, arbitrary: valid }, { weight: 1, arbitrary: junk });
}

const ecJwk = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' });

const metadata = fc
  .tuple(
    fc.record(
      {
        client_name: field(fc.oneof(fc.constant('Test MCP Client'), hostileString)),
        redirect_uris: field(fc.oneof(fc.constant([REDIRECT_URI]), fc.array(uri, { maxLength: 4 }), fc.array(uri, { minLength: 11, maxLength: 12 }))),
        grant_types: field(fc.subarray(['authorization_code', 'refresh_token', 'implicit', 'client_credentials', 'password', 'urn:ietf:params:oauth:grant-type:device_code', 'x'])),
        response_types: field(fc.subarray(['code', 'token', 'id_token', 'code id_token', 'none', 'x'])),
        token_endpoint_auth_method: field(fc.constantFrom('none', 'client_secret_basic', 'client_secret_post', 'private_key_jwt', 'client_secret_jwt', 'tls_client_auth', 'x')),
        scope: field(fc.oneof(fc.constantFrom('files:read', 'files:read files:write', 'openid offline_access', 'admin'), hostileString)),
        logo_uri: field(uri),
        client_uri: field(uri),
        policy_uri: field(uri),
        tos_uri: field(uri),
        application_type: field(fc.constantFrom('native', 'web', 'browser', '')),
        software_id: field(hostileString),
        software_version: field(hostileString),
        contacts: field(fc.array(fc.oneof(fc.emailAddress(), hostileString), { maxLength: 3 })),
        jwks: field(fc.oneof(fc.constant({ keys: [ecJwk] }), fc.constant({ keys: [] }), fc.record({ keys: fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 2 }) }))),
        client_secret: field(hostileString),
        client_id: field(hostileString),
        client_secret_expires_at: field(fc.integer()),
        id_token_signed_response_alg: field(fc.constantFrom('RS256', 'none', 'HS256', 'x')),
        post_logout_redirect_uris: field(fc.array(uri, { maxLength: 2 })),
      },
      { requiredKeys: [] },
    ),
    fc.dictionary(hostileString, junk, { maxKeys: 3 }),
  )
  .map(([known, unknown]) => ({ ...unknown, ...known }));

/** Metadata real clients send, varied within what should be accepted, plus at most one hostile field. */
const validUri = fc.constantFrom(REDIRECT_URI, 'http://127.0.0.1/callback', 'http://localhost:3000/cb', 'http://[::1]:8080/cb', 'https://app.example.com/cb', 'com.example.app:/oauth', 'cursor://anysphere.cursor-retrieval/oauth/callback');
const plausible = fc
  .tuple(
    fc.record(
      {
        client_name: fc.oneof(fc.constant('Test MCP Client'), fc.string({ maxLength: 60 })),
        redirect_uris: fc.array(validUri, { minLength: 1, maxLength: 3 }),
        grant_types: fc.constantFrom(['authorization_code'], ['authorization_code', 'refresh_token'], ['authorization_code', 'urn:ietf:params:oauth:grant-type:device_code']),
        response_types: fc.constantFrom(['code'], ['code', 'token']),
        token_endpoint_auth_method: fc.constantFrom('none', 'client_secret_basic', 'client_secret_post'),
        scope: fc.constantFrom('files:read', 'files:read files:write', 'openid offline_access', 'admin'),
        logo_uri: fc.constantFrom('https://app.example.com/logo.png', 'https://cdn.example.com/x.svg'),
        client_uri: fc.constant('https://app.example.com'),
        application_type: fc.constantFrom('native', 'web'),
        software_id: fc.uuid(),
        software_version: fc.constantFrom('1.0.0', '0.0.1-beta'),
        contacts: fc.array(fc.emailAddress(), { maxLength: 2 }),
      },
      { requiredKeys: ['redirect_uris'] },
    ),
    fc.option(fc.tuple(fc.constantFrom('client_name', 'redirect_uris', 'grant_types', 'response_types', 'token_endpoint_auth_method', 'scope', 'logo_uri', 'client_uri', 'application_type', 'software_id', 'contacts', 'jwks', 'jwks_uri', '__proto__', 'constructor', 'client_id', 'client_secret', 'registration_access_token'), junk), { nil: undefined }),
  )
  .map(([fields, hostile]) => (hostile ? { ...fields, [hostile[0]]: hostile[1] } : fields));

const registrationBody: fc.Arbitrary<unknown> = fc.oneof({ weight: 4, arbitrary: plausible }, { weight: 4, arbitrary: metadata }, { weight: 1, arbitrary: junk });

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

async function post(body: string | Uint8Array, contentType: string | undefined): Promise<{ status: number; text: string }> {
  const headers: Record<string, string> = {};
  if (contentType !== undefined) headers['content-type'] = contentType;
  const response = await fetch(`${app.issuer}/register`, { method: 'POST', headers, body, redirect: 'manual' });
  return { status: response.status, text: await response.text() };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The profile's redirect URI rules, restated independently of src/clients/redirect-uris.ts. */
function acceptableRedirectUri(value: unknown): boolean {
  if (typeof value !== 'string' || /[\s\x00-\x1f\x7f#*]/.test(value)) return false;
  const url = URL.parse(value);
  if (!url || url.username || url.password) return false;
  if (['javascript:', 'vbscript:', 'data:', 'blob:', 'file:', 'about:', 'ws:', 'wss:', 'ftp:'].includes(url.protocol)) return false;
  if (url.protocol === 'http:') return ['127.0.0.1', '[::1]', 'localhost'].includes(url.hostname);
  if (url.protocol === 'https:') return url.hostname !== '';
  // Private-use: a reverse-domain scheme (RFC 8252 §7.1) or a known MCP client's (issue 15 §4).
  const scheme = url.protocol.slice(0, -1).toLowerCase();
  return ['cursor', 'vscode', 'vscode-insiders', 'windsurf', 'claude'].includes(scheme) || /^[a-z](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+$/.test(scheme);
}

/** Whether `location` is one of `uris` (query added by the server ignored; loopback: any port). */
function isRegisteredRedirect(location: URL, uris: string[]): boolean {
  return uris.some((registeredUri) => {
    const r = new URL(registeredUri);
    if (location.protocol !== r.protocol || location.username || location.password || location.pathname !== r.pathname) return false;
    if (r.protocol === 'http:' && ['127.0.0.1', '[::1]', 'localhost'].includes(r.hostname)) return location.hostname === r.hostname;
    return location.host === r.host;
  });
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

describe('fuzz: POST /register', () => {
  test('arbitrary metadata: never 5xx; 201 stores exactly one client; 4xx is a JSON error and stores nothing', async () => {
    await fc.assert(
      fc.asyncProperty(registrationBody, async (body) => {
        const before = await countClients();
        const { status, text } = await post(JSON.stringify(body) ?? 'null', 'application/json');
        const after = await countClients();
        const json = parseJson(text) as Record<string, unknown> | undefined;
        expect(status, text).toBeLessThan(500);
        if (status === 201) {
          expect(typeof json?.client_id, text).toBe('string');
          expect(after - before).toBe(1);
          // What was registered obeys the redirect URI rules.
          const uris = json?.redirect_uris;
          expect(Array.isArray(uris), text).toBe(true);
          for (const u of uris as unknown[]) expect(acceptableRedirectUri(u), `registered ${JSON.stringify(u)}`).toBe(true);
        } else {
          expect(status, text).toBeGreaterThanOrEqual(400);
          expect(typeof json?.error, text).toBe('string');
          expect(after).toBe(before);
        }
      }),
      runs(200),
    );
  });

  test('raw bodies of any content type: never 5xx; no client stored unless 201', async () => {
    const contentType = fc.constantFrom(
      'application/json',
      'application/json; charset=utf-8',
      'application/json; charset=utf-16',
      'application/json; charset=bogus',
      'application/x-www-form-urlencoded',
      'text/plain',
      'multipart/form-data; boundary=x',
      'application/xml',
      'application/octet-stream',
      undefined,
    );
    const rawBody: fc.Arbitrary<string | Uint8Array> = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 200 }),
      fc.string({ unit: 'binary-ascii', maxLength: 200 }),
      fc.uint8Array({ maxLength: 300 }),
      fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
      // Almost-JSON: a valid registration with damage.
      fc
        .tuple(fc.nat({ max: 80 }), fc.constantFrom('', '{', '}', ',', '"', '\\', '\u0000', '\ud800', ']]]]', 'redirect_uris=x'))
        .map(([cut, tail]) => `${JSON.stringify({ client_name: 'x', redirect_uris: [REDIRECT_URI] }).slice(0, cut)}${tail}`),
      fc.constantFrom(
        '',
        'null',
        '[]',
        '"string"',
        '1e999999',
        '{"__proto__":{"isAdmin":true},"redirect_uris":["http://127.0.0.1/cb"]}',
        '{"constructor":{"prototype":{"x":1}},"redirect_uris":["http://127.0.0.1/cb"]}',
        'redirect_uris=http%3A%2F%2F127.0.0.1%2Fcb&client_name=x',
        '\ufeff{"redirect_uris":["http://127.0.0.1/cb"]}',
        `${'['.repeat(5000)}${']'.repeat(5000)}`,
        `{"redirect_uris":["http://127.0.0.1/cb"],"x":"${'a'.repeat(70_000)}"}`,
      ),
    );
    await fc.assert(
      fc.asyncProperty(rawBody, contentType, async (body, type) => {
        const before = await countClients();
        const { status, text } = await post(body, type);
        const after = await countClients();
        expect(status, text).toBeLessThan(500);
        if (status === 201) expect(after - before).toBe(1);
        else expect(after, `status ${status}: ${text}`).toBe(before);
      }),
      runs(200),
    );
  });
});

/**
 * GET /authorize with arbitrary parameters: never 5xx; a Location only to the client's registered
 * redirect URI (loopback: same host and path, any port) or Gatehouse's own /interaction/ page; no
 * Grant, AuthorizationCode or token rows stored. `repeatResource: false` sends `resource` at most once.
 */
const PARAM_NAMES = { client_id: 1, response_type: 1, redirect_uri: 1, code_challenge: 1, code_challenge_method: 1, scope: 1, resource: 1, state: 1, prompt: 1, response_mode: 1, nonce: 1, max_age: 1, request: 1, request_uri: 1 };

async function authorizeProperty(options: { repeatResource: boolean }): Promise<void> {
  const clientIds = [...registered.keys()];
  const loopbackVariants = [
    REDIRECT_URI,
    'http://127.0.0.1:1/callback',
    'http://127.0.0.1/callback',
    'http://localhost:53682/callback',
    'http://[::1]:53682/callback',
    'HTTP://127.0.0.1:53682/callback',
    'https://127.0.0.1:53682/callback',
    'http://127.0.0.1:53682/callback/',
    'http://127.0.0.1:53682/CALLBACK',
    'http://127.0.0.1:53682//callback',
    'http://127.0.0.1:53682/callback/../evil',
    'http://127.0.0.1:53682/callback%2F..%2Fevil',
    'http://127.0.0.1:53682/callbackx',
    'http://127.0.0.1:53682/callback?x=1',
    'http://127.0.0.1:53682/callback#frag',
    'http://user@127.0.0.1:53682/callback',
    'http://127.0.0.1.evil.example:53682/callback',
    'http://127.0.0.1:53682@evil.example/callback',
  ];
  const httpsVariants = [
    HTTPS_REDIRECT_URI,
    'https://app.example.com:443/oauth/callback',
    'https://APP.example.com/oauth/callback',
    'https://app.example.com:8443/oauth/callback',
    'http://app.example.com/oauth/callback',
    'https://app.example.com/oauth/callback?next=https://evil.example',
    'https://app.example.com.evil.example/oauth/callback',
    'https://evil.example/oauth/callback',
  ];
  const privateUseVariants = [PRIVATE_USE_REDIRECT_URI, 'com.example.app://oauth/callback', 'com.example.app:/oauth/callback/x', 'com.evil.app:/oauth/callback'];
  const param = <T>(a: fc.Arbitrary<T>) => fc.option(fc.oneof(a.map((v) => [v]), fc.array(a, { minLength: 2, maxLength: 3 })), { nil: undefined });
  const single = <T>(a: fc.Arbitrary<T>) => fc.option(a.map((v) => [v]), { nil: undefined });
  const str = (values: string[]) => fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...values) }, { weight: 1, arbitrary: hostileString });
  const { challenge } = pkcePair();

  const fuzzedParams = fc.record(
    {
      client_id: param(
        fc.oneof(
          { weight: 6, arbitrary: fc.constantFrom(...clientIds) },
          { weight: 1, arbitrary: fc.constantFrom('', 'unknown-client', 'https://client.invalid/metadata.json', 'https://127.0.0.1/metadata.json', 'http://client.example/m.json', `${clientIds[0]} `, clientIds[0]!.toUpperCase()) },
          { weight: 1, arbitrary: hostileString },
        ),
      ),
      response_type: param(str(['code', 'token', 'id_token', 'code id_token', 'none', ''])),
      redirect_uri: param(fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...loopbackVariants, ...httpsVariants, ...privateUseVariants) }, { weight: 1, arbitrary: uri })),
      code_challenge: param(str([challenge, 'short', 'a'.repeat(43), 'a'.repeat(129), '', '!!!!'])),
      code_challenge_method: param(str(['S256', 'plain', 's256', ''])),
      scope: param(str(['files:read', 'files:read files:write', 'openid', 'openid offline_access', 'admin', ''])),
      resource: (options.repeatResource ? param : single)(str([RESOURCE, `${RESOURCE}/`, `${RESOURCE}#frag`, 'https://unknown.example', 'urn:example:x', 'not a url', '/relative', ''])),
      state: param(hostileString),
      prompt: param(str(['none', 'login', 'consent', 'select_account', 'create', 'none login', ''])),
      response_mode: param(str(['query', 'fragment', 'form_post', 'jwt', 'web_message'])),
      nonce: param(hostileString),
      max_age: param(str(['0', '-1', '1e9', 'x'])),
      request: param(str(['eyJhbGciOiJub25lIn0.e30.', 'x.y.z'])),
      request_uri: param(str(['urn:ietf:params:oauth:request_uri:abc', 'https://evil.example/req'])),
    },
    { requiredKeys: [] },
  );
  // A well-formed request for a registered client (loopback: any port) with up to two parameters
  // replaced or removed, so the fuzzing also reaches the paths behind validation.
  const plausibleParams = fc
    .tuple(fc.constantFrom(...clientIds), fc.integer({ min: 1024, max: 65535 }), fuzzedParams, fc.shuffledSubarray(Object.keys(PARAM_NAMES), { maxLength: 2 }))
    .map(([id, loopbackPort, fuzzed, replaced]) => {
      const registeredUri = registered.get(id)![0]!;
      const redirectUri = registeredUri === REDIRECT_URI ? `http://127.0.0.1:${loopbackPort}/callback` : registeredUri;
      const params: Record<string, string[] | undefined> = {
        client_id: [id],
        response_type: ['code'],
        redirect_uri: [redirectUri],
        code_challenge: [challenge],
        code_challenge_method: ['S256'],
        resource: [RESOURCE],
        scope: ['files:read'],
        state: ['state'],
      };
      for (const name of replaced) params[name] = (fuzzed as Record<string, string[] | undefined>)[name];
      return params;
    });
  const params = fc.oneof(fuzzedParams as fc.Arbitrary<Record<string, string[] | undefined>>, plausibleParams);
  const extra = fc.dictionary(hostileString, hostileString, { maxKeys: 3 });

  await fc.assert(
    fc.asyncProperty(params, extra, async (known, unknown) => {
      const url = new URL(`${app.issuer}/authorize`);
      for (const [k, v] of Object.entries(unknown)) url.searchParams.append(k, v);
      for (const [k, values] of Object.entries(known)) for (const v of values ?? []) url.searchParams.append(k, v);
      const before = await countGrantedPayloads();
      const response = await fetch(url, { redirect: 'manual' });
      const text = await response.text();
      const after = await countGrantedPayloads();

      expect(response.status, text.slice(0, 500)).toBeLessThan(500);
      expect(after).toBe(before);
      const location = response.headers.get('location');
      if (location !== null) {
        const target = URL.parse(location, app.issuer);
        expect(target, location).not.toBeNull();
        const own = target!.origin === app.issuer && target!.pathname.startsWith('/interaction/');
        const ids = known.client_id ?? [];
        const allowed = ids.flatMap((id) => registered.get(id) ?? []);
        expect(own || isRegisteredRedirect(target!, allowed), `redirected to ${location}`).toBe(true);
      }
    }),
    runs(200),
  );
}

describe('fuzz: GET /authorize', () => {
  // This property found a bug (now fixed): two distinct `resource` values at /authorize were a 500,
  // because the InvalidTarget was thrown while oidc-provider assembled parameters. Shrunk
  // counterexample (seed 20240611): {"client_id":[<registered>],"resource":["","https://mcp.example.com"]}.
  test('arbitrary parameters: never 5xx; redirects only to a registered redirect URI or /interaction/; no grant or code stored', async () => {
    await authorizeProperty({ repeatResource: true });
  });

  // The same property with `resource` sent at most once, so the rest of /authorize stays fuzzed
  // while the bug above is open. Not a replacement for the test above.
  test('arbitrary parameters, resource at most once: never 5xx; redirects only to a registered redirect URI or /interaction/; no grant or code stored', async () => {
    await authorizeProperty({ repeatResource: false });
  });
});

describe('fuzz: POST /token', () => {
  // Issue 15 §7: a NUL in client_id reached PostgreSQL (a 500, uncounted by the rate limit).
  test('arbitrary parameters and client ids, in the body or HTTP Basic: never 5xx; a JSON error; no token stored', async () => {
    const clientIds = [...registered.keys()];
    const clientId = fc.oneof({ weight: 2, arbitrary: fc.constantFrom(...clientIds) }, { weight: 3, arbitrary: hostileString });
    const grant = fc.constantFrom('authorization_code', 'refresh_token', 'client_credentials', 'password', '', 'x');
    const params = fc.record(
      {
        grant_type: fc.oneof(grant, hostileString),
        client_id: clientId,
        code: hostileString,
        refresh_token: hostileString,
        code_verifier: hostileString,
        redirect_uri: uri,
        resource: fc.oneof(fc.constant(RESOURCE), hostileString),
      },
      { requiredKeys: [] },
    );
    await fc.assert(
      fc.asyncProperty(params, fc.option(clientId, { nil: undefined }), fc.dictionary(hostileString, hostileString, { maxKeys: 2 }), async (known, basic, unknown) => {
        const body = new URLSearchParams();
        for (const [k, v] of Object.entries(unknown)) body.append(k, v);
        for (const [k, v] of Object.entries(known)) if (v !== undefined) body.append(k, v);
        const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
        // RFC 6749 §2.3.1: the id form-encoded; a lone surrogate cannot be, and goes as its UTF-8 replacement.
        const encoded = (() => {
          try {
            return encodeURIComponent(basic ?? '');
          } catch {
            return (basic ?? '').replace(/:/g, '%3A');
          }
        })();
        if (basic !== undefined) headers.authorization = `Basic ${Buffer.from(`${encoded}:secret`).toString('base64')}`;
        const before = await countGrantedPayloads();
        const response = await fetch(`${app.issuer}/token`, { method: 'POST', headers, body });
        const text = await response.text();
        expect(response.status, text.slice(0, 500)).toBeLessThan(500);
        expect(response.status, text.slice(0, 500)).toBeGreaterThanOrEqual(400);
        expect(typeof (parseJson(text) as Record<string, unknown> | undefined)?.error, text.slice(0, 500)).toBe('string');
        expect(await countGrantedPayloads()).toBe(before);
      }),
      runs(150),
    );
  });
});
