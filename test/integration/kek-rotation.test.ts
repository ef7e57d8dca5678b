/**
 * Replacing the key-encryption key (KEK) without downtime, end to end with real data: the documented
 * procedure is (1) every instance gets the new key B with the old key A in
 * GATEHOUSE_PREVIOUS_KEY_ENCRYPTION_KEYS, (2) `gatehouse keys rewrap`, (3) the previous key is
 * removed. Tokens, sessions and the published keys survive every step; an instance left on A alone
 * can no longer start; a rewrap that cannot decrypt everything changes nothing.
 */
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { userInfo } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { decodeProtectedHeader } from 'jose';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startServer, type RunningServer } from '../../src/app/server.ts';
import { ConfigError, loadConfig, settings } from '../../src/config/config.ts';
import { createLogger } from '../../src/http/logger.ts';
import { createSecretBox, UndecryptableSecretError } from '../../src/keys/secret-box.ts';
import { seed, startTestApp, type TestApp } from '../support/app.ts';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { authorizationUrl, authorizeForCode, authorizeInBrowser, CookieJar, obtainTokens, pkcePair, registerClient, tokenRequest } from '../support/oauth.ts';

const A = 'a1'.repeat(32);
const B = 'b2'.repeat(32);
const WRONG = 'c3'.repeat(32);
const KEK = 'GATEHOUSE_KEY_ENCRYPTION_KEY';
const PREVIOUS = 'GATEHOUSE_PREVIOUS_KEY_ENCRYPTION_KEYS';
const RESOURCE = 'https://mcp.example.com';
const hex = (k: string) => Buffer.from(k, 'hex');

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BIN = path.join(ROOT, 'bin/gatehouse.js');

/** Runs the real `gatehouse` command with only `env`'s Gatehouse settings (as cli.test.ts does). */
function gatehouse(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env };
  for (const s of Object.values(settings)) delete childEnv[s.env];
  Object.assign(childEnv, { GATEHOUSE_LOG_LEVEL: 'silent' }, env);
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`gatehouse ${args.join(' ')} did not finish\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, 25_000);
    child.once('close', (code) => {
      clearTimeout(timer);
      // Not Gatehouse's output (cli.test.ts): oidc-provider's warning on an older Node.js.
      resolve({ code, stdout, stderr: stderr.replace(/^oidc-provider WARNING: Unsupported runtime\..*\n/m, '') });
    });
  });
}

function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(Object.keys(env))}`);
}

describe('GATEHOUSE_PREVIOUS_KEY_ENCRYPTION_KEYS (configuration)', () => {
  test('a comma-separated list of old keys, for decryption only, with a warning while it is set', () => {
    const config = loadConfig({ [KEK]: B, [PREVIOUS]: ` ${A.toUpperCase()} ,${WRONG}` });
    expect(config.previousKeyEncryptionKeys).toEqual([hex(A), hex(WRONG)]);
    expect(config.keyEncryptionKey).toEqual(hex(B));
    expect(config.warnings).toEqual([expect.stringMatching(/^GATEHOUSE_PREVIOUS_KEY_ENCRYPTION_KEYS .*remove it once `gatehouse keys rewrap` has run/)]);
    expect(config.warnings.join()).not.toContain(A);

    const without = loadConfig({ [KEK]: B });
    expect(without.previousKeyEncryptionKeys).toEqual([]);
    expect(without.warnings).toEqual([]);
    expect(loadConfig({ [KEK]: B, [PREVIOUS]: '' }).previousKeyEncryptionKeys).toEqual([]);
  });

  test.each([
    ['not hex', 'deadbeefnothex'],
    ['one key too short', `${A},${'de'.repeat(31)}`],
    ['an empty entry', `${A},`],
    ['two keys without a comma', `${A}${WRONG}`],
  ])('a malformed list (%s) is refused, naming the variable and never echoing a key', (_what, value) => {
    const err = configError({ [KEK]: B, [PREVIOUS]: value });
    expect(err.problems).toEqual([expect.stringMatching(/^GATEHOUSE_PREVIOUS_KEY_ENCRYPTION_KEYS: every key must be 64 hex characters/)]);
    for (const fragment of [A, WRONG, 'deadbeef', 'de'.repeat(31)]) expect(err.message).not.toContain(fragment);
  });

  test('the current key is refused as a previous key (in any case, among others)', () => {
    for (const value of [B, B.toUpperCase(), `${A},${B}`]) {
      const err = configError({ [KEK]: B, [PREVIOUS]: value });
      expect(err.problems).toEqual([expect.stringMatching(/^GATEHOUSE_PREVIOUS_KEY_ENCRYPTION_KEYS: must not contain the current GATEHOUSE_KEY_ENCRYPTION_KEY/)]);
      expect(err.message).not.toContain(B);
    }
  });

  test('previous keys without a current key are refused (nothing could be encrypted)', () => {
    const err = configError({ [PREVIOUS]: A });
    expect(err.problems).toEqual([expect.stringMatching(/^GATEHOUSE_PREVIOUS_KEY_ENCRYPTION_KEYS: set only together with GATEHOUSE_KEY_ENCRYPTION_KEY/)]);
    expect(err.message).not.toContain(A);
    // A malformed current key is reported once, as itself.
    expect(configError({ [KEK]: 'nope', [PREVIOUS]: A }).problems).toEqual([expect.stringMatching(/^GATEHOUSE_KEY_ENCRYPTION_KEY: must be 64 hex/)]);
  });
});

describe('the secret box', () => {
  test('encrypts under the current key; decrypts under it or a previous one, and says which kind was needed', () => {
    const old = createSecretBox(hex(A));
    const box = createSecretBox(hex(B), [hex(WRONG), hex(A)]);
    const underA = old.encrypt('s3cret', 'p');
    expect(box.open(underA, 'p')).toEqual({ plaintext: 's3cret', underPreviousKey: true });
    const rewrapped = box.rewrap(underA, 'p');
    expect(rewrapped.changed).toBe(true);
    expect(createSecretBox(hex(B)).decrypt(rewrapped.ciphertext, 'p')).toBe('s3cret');
    expect(box.open(rewrapped.ciphertext, 'p')).toEqual({ plaintext: 's3cret', underPreviousKey: false });
    expect(box.rewrap(rewrapped.ciphertext, 'p')).toEqual({ ciphertext: rewrapped.ciphertext, changed: false });
    // The purpose still binds a ciphertext to its record, under every key.
    expect(() => box.decrypt(underA, 'other')).toThrow(UndecryptableSecretError);
  });

  test('when no key fits: the same message as before, now naming GATEHOUSE_PREVIOUS_KEY_ENCRYPTION_KEYS', () => {
    const underA = createSecretBox(hex(A)).encrypt('s3cret', 'p');
    expect(() => createSecretBox(hex(B)).decrypt(underA, 'p')).toThrow(
      /^cannot decrypt a stored secret: GATEHOUSE_KEY_ENCRYPTION_KEY is not the key the data was encrypted with \(after replacing it, keep the old key in GATEHOUSE_PREVIOUS_KEY_ENCRYPTION_KEYS/,
    );
    expect(() => createSecretBox(hex(B), [hex(WRONG)]).decrypt(underA, 'p')).toThrow(
      /^cannot decrypt a stored secret: GATEHOUSE_KEY_ENCRYPTION_KEY is not the key the data was encrypted with, nor is any key in GATEHOUSE_PREVIOUS_KEY_ENCRYPTION_KEYS$/,
    );
  });
});

describe('replacing the key-encryption key, end to end', () => {
  let database: TestDatabase;
  const jar = new CookieJar();
  let publicClient: Record<string, any>;
  let legacy: Record<string, any>;
  let refreshToken: string;
  let kids: string[];
  let original: Record<string, string>;
  const apps: TestApp[] = [];
  const servers: { running: RunningServer; issuer: string; log: () => string }[] = [];

  beforeAll(async () => {
    // The CLI runs as a separate process: PostgreSQL, whatever GATEHOUSE_TEST_DB says.
    database = await createTestDatabase({ kind: 'postgres' });
  });
  afterAll(async () => {
    for (const app of apps) await app.close();
    for (const { running } of servers) await running.stop();
    await database?.close();
  });

  const dbEnv = () => ({ DATABASE_URL: database.url! });

  async function start(env: Record<string, string>): Promise<TestApp> {
    const app = await startTestApp({ env, database });
    apps.push(app);
    return app;
  }

  async function jwksKids(issuer: string): Promise<string[]> {
    const jwks = (await (await fetch(`${issuer}/jwks`)).json()) as { keys: { kid: string; d?: string }[] };
    expect(jwks.keys.every((k) => k.d === undefined)).toBe(true);
    return jwks.keys.map((k) => k.kid).sort();
  }

  /** Every stored encrypted value, by the purpose it is encrypted for (its record). */
  async function storedCiphertexts(): Promise<Record<string, string>> {
    const keys = await database.db.selectFrom('keys').select(['kid', 'use', 'private_enc']).execute();
    const clients = await database.db.selectFrom('clients').select(['client_id', 'client_secret_enc']).where('client_secret_enc', 'is not', null).execute();
    return Object.fromEntries([
      ...keys.map((k) => [`key:${k.use}:${k.kid}`, k.private_enc]),
      ...clients.map((c) => [`client-secret:${c.client_id}`, c.client_secret_enc!]),
    ]);
  }

  async function rewrapEvents() {
    return database.db.selectFrom('audit_events').selectAll().where('event', '=', 'keys.rewrapped').orderBy('id').execute();
  }

  function refresh(issuer: string) {
    return tokenRequest(issuer, { grant_type: 'refresh_token', refresh_token: refreshToken, client_id: publicClient.client_id });
  }

  /** The signed-in browser authorizes again: no sign-in page means its session (cookie keys, session row) survived. */
  async function authorizeWithSession(issuer: string) {
    const { verifier, challenge } = pkcePair();
    const { callback, pages } = await authorizeInBrowser(
      authorizationUrl(issuer, {
        client_id: publicClient.client_id,
        response_type: 'code',
        redirect_uri: publicClient.redirect_uris[0],
        code_challenge: challenge,
        code_challenge_method: 'S256',
        resource: RESOURCE,
      }),
      { jar },
    );
    expect(pages.some((html) => /<form method="post" action="[^"]*\/login"/.test(html))).toBe(false);
    const code = callback.searchParams.get('code');
    expect(code, String(callback)).toBeTruthy();
    const tokens = await tokenRequest(issuer, {
      grant_type: 'authorization_code',
      code: code!,
      code_verifier: verifier,
      redirect_uri: publicClient.redirect_uris[0],
      client_id: publicClient.client_id,
      resource: RESOURCE,
    });
    expect(tokens.status).toBe(200);
    expect(kids).toContain(decodeProtectedHeader(tokens.body.access_token).kid);
  }

  /** A client registered before migration 0005: its secret is stored encrypted, and it authenticates with it. */
  async function legacyClientExchange(issuer: string) {
    const { code, verifier } = await authorizeForCode(issuer, legacy, { resource: RESOURCE, jar });
    return tokenRequest(issuer, {
      grant_type: 'authorization_code',
      code,
      code_verifier: verifier,
      redirect_uri: legacy.redirect_uris[0],
      client_id: legacy.client_id,
      client_secret: legacy.client_secret,
      resource: RESOURCE,
    });
  }

  async function freePort(): Promise<number> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    await new Promise<void>((resolve) => server.close(() => resolve()));
    return port;
  }

  /** `gatehouse serve` as the CLI runs it, with a fast key watcher and its log captured. */
  async function runServer(env: Record<string, string>) {
    const [port, adminPort] = [await freePort(), await freePort()];
    const issuer = `http://localhost:${port}`;
    const config = loadConfig({
      ...dbEnv(),
      PORT: String(port),
      GATEHOUSE_ADMIN_PORT: String(adminPort),
      GATEHOUSE_ISSUER: issuer,
      GATEHOUSE_CLIENT_APPROVAL: 'automatic',
      GATEHOUSE_KEY_CHECK_INTERVAL: '1s',
      ...env,
    });
    let log = '';
    const stream = new PassThrough().setEncoding('utf8');
    stream.on('data', (d: string) => (log += d));
    const running = await startServer(config, createLogger('info', stream));
    const entry = { running, issuer, log: () => log };
    servers.push(entry);
    return entry;
  }

  test('with KEK A: a user signs in, a client gets tokens, and a legacy client secret is stored encrypted', async () => {
    const app = await start({ [KEK]: A });
    await seed(app);
    const { client, tokens } = await obtainTokens(app.issuer, { jar });
    expect(tokens.status).toBe(200);
    publicClient = client;
    refreshToken = tokens.body.refresh_token;
    kids = await jwksKids(app.issuer);
    expect(kids).toHaveLength(1);

    legacy = await registerClient(app.issuer, { token_endpoint_auth_method: 'client_secret_post' });
    await database.db
      .updateTable('clients')
      .set({ client_secret_hash: null, client_secret_enc: createSecretBox(hex(A)).encrypt(legacy.client_secret, `client-secret:${legacy.client_id}`) })
      .where('client_id', '=', legacy.client_id)
      .execute();
    expect((await legacyClientExchange(app.issuer)).status).toBe(200);
    await app.close();
    apps.splice(apps.indexOf(app), 1);

    original = await storedCiphertexts();
    // A signing key, a cookie key, the legacy client secret.
    expect(Object.keys(original).map((p) => p.replace(/:[^:]+$/, ''))).toEqual(expect.arrayContaining(['key:sig', 'key:cookie', 'client-secret']));
    expect(Object.keys(original)).toHaveLength(3);
  });

  test('step 1, KEK B with A as previous: same JWKS; the session, the refresh token and the legacy secret still work; nothing is rewritten', async () => {
    const app = await start({ [KEK]: B, [PREVIOUS]: A });
    expect(app.config.warnings).toContainEqual(expect.stringMatching(/^GATEHOUSE_PREVIOUS_KEY_ENCRYPTION_KEYS .*rewrap/));
    expect(await jwksKids(app.issuer)).toEqual(kids);
    await authorizeWithSession(app.issuer);
    const refreshed = await refresh(app.issuer);
    expect(refreshed.status).toBe(200);
    refreshToken = refreshed.body.refresh_token;
    expect(kids).toContain(decodeProtectedHeader(refreshed.body.access_token).kid);
    expect((await legacyClientExchange(app.issuer)).status).toBe(200);
    expect(await storedCiphertexts()).toEqual(original);
  });

  test('running servers: one on B with A as previous, one still on A alone (step 1 skipped there)', async () => {
    const current = await runServer({ [KEK]: B, [PREVIOUS]: A });
    const stale = await runServer({ [KEK]: A });
    for (const s of [current, stale]) expect(await jwksKids(s.issuer)).toEqual(kids);
    // The warning is in the audit trail for as long as the previous key is configured.
    const warnings = await database.db.selectFrom('audit_events').select('details').where('event', '=', 'config.warning').execute();
    expect(warnings.map((w) => String(w.details.message))).toContainEqual(expect.stringMatching(/^GATEHOUSE_PREVIOUS_KEY_ENCRYPTION_KEYS/));
    expect(JSON.stringify(warnings)).not.toContain(A);
  });

  test('a rewrap with a wrong previous key changes nothing and exits 3, naming every record', async () => {
    const result = await gatehouse(['keys', 'rewrap'], { ...dbEnv(), [KEK]: B, [PREVIOUS]: WRONG });
    expect(result.code).toBe(3);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(/^gatehouse: 3 stored secret\(s\) fit neither GATEHOUSE_KEY_ENCRYPTION_KEY nor any key in GATEHOUSE_PREVIOUS_KEY_ENCRYPTION_KEYS; nothing was changed:\n/);
    const [sig] = Object.keys(original).filter((p) => p.startsWith('key:sig:')).map((p) => p.slice('key:sig:'.length));
    const [cookie] = Object.keys(original).filter((p) => p.startsWith('key:cookie:')).map((p) => p.slice('key:cookie:'.length));
    expect(result.stderr).toContain(`  - signing key ${sig}: no configured key-encryption key decrypts it\n`);
    expect(result.stderr).toContain(`  - cookie key ${cookie}: no configured key-encryption key decrypts it\n`);
    expect(result.stderr).toContain(`  - client secret of ${legacy.client_id}: no configured key-encryption key decrypts it\n`);
    for (const secret of [A, B, WRONG]) expect(result.stderr).not.toContain(secret);
    expect(await storedCiphertexts()).toEqual(original);
    expect(await rewrapEvents()).toEqual([]);
  });

  test('one undecryptable secret among good ones: all or nothing — nothing changes, only that record is named', async () => {
    const broken = await registerClient(servers[0]!.issuer, { token_endpoint_auth_method: 'client_secret_post' });
    await database.db
      .updateTable('clients')
      .set({ client_secret_hash: null, client_secret_enc: createSecretBox(hex(WRONG)).encrypt(broken.client_secret, `client-secret:${broken.client_id}`) })
      .where('client_id', '=', broken.client_id)
      .execute();
    const before = await storedCiphertexts();
    const result = await gatehouse(['keys', 'rewrap'], { ...dbEnv(), [KEK]: B, [PREVIOUS]: A });
    expect(result.code).toBe(3);
    expect(result.stderr).toBe(
      'gatehouse: 1 stored secret(s) fit neither GATEHOUSE_KEY_ENCRYPTION_KEY nor any key in GATEHOUSE_PREVIOUS_KEY_ENCRYPTION_KEYS; nothing was changed:\n' +
        `  - client secret of ${broken.client_id}: no configured key-encryption key decrypts it\n`,
    );
    expect(await storedCiphertexts()).toEqual(before);
    expect(await rewrapEvents()).toEqual([]);
    // The operator deals with the broken record (here: the client loses its unusable secret).
    await database.db.updateTable('clients').set({ client_secret_enc: null }).where('client_id', '=', broken.client_id).execute();
    expect(await storedCiphertexts()).toEqual(original);
  });

  test('step 2, keys rewrap: every secret re-encrypted under B in one run, audited with counts only; a second run changes nothing', async () => {
    const result = await gatehouse(['keys', 'rewrap'], { ...dbEnv(), [KEK]: B, [PREVIOUS]: A });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(
      'Re-encrypted 3 secrets under the current key-encryption key; 0 were already under it. Remove GATEHOUSE_PREVIOUS_KEY_ENCRYPTION_KEYS from every instance.\n',
    );

    const rewrapped = await storedCiphertexts();
    expect(Object.keys(rewrapped).sort()).toEqual(Object.keys(original).sort());
    const onlyB = createSecretBox(hex(B));
    const onlyA = createSecretBox(hex(A));
    const plaintexts: string[] = [];
    for (const [purpose, ciphertext] of Object.entries(rewrapped)) {
      expect(ciphertext).not.toBe(original[purpose]);
      plaintexts.push(onlyB.decrypt(ciphertext, purpose));
      expect(plaintexts.at(-1)).toBe(onlyA.decrypt(original[purpose]!, purpose));
      expect(() => onlyA.decrypt(ciphertext, purpose)).toThrow(UndecryptableSecretError);
    }
    expect(plaintexts).toContain(legacy.client_secret);

    const [event, ...more] = await rewrapEvents();
    expect(more).toEqual([]);
    expect(event).toMatchObject({
      actor: `cli:${userInfo().username}`,
      details: { rewrapped: 3, already_current: 0, signing_keys: 1, cookie_keys: 1, client_secrets: 1 },
    });
    expect(Object.keys(event!.details).sort()).toEqual(['already_current', 'client_secrets', 'cookie_keys', 'rewrapped', 'signing_keys']);
    const recorded = JSON.stringify(event);
    for (const secret of [A, B, ...plaintexts, ...Object.values(original), ...Object.values(rewrapped)]) expect(recorded).not.toContain(secret);
    const privateD = plaintexts.map((p) => /"d":"([^"]+)"/.exec(p)?.[1]).find(Boolean);
    expect(privateD).toBeTruthy();
    expect(recorded).not.toContain(privateD);

    const again = await gatehouse(['keys', 'rewrap'], { ...dbEnv(), [KEK]: B, [PREVIOUS]: A });
    expect(again.code).toBe(0);
    expect(again.stdout).toBe(
      'Re-encrypted 0 secrets under the current key-encryption key; 3 were already under it. Remove GATEHOUSE_PREVIOUS_KEY_ENCRYPTION_KEYS from every instance.\n',
    );
    expect(await storedCiphertexts()).toEqual(rewrapped);
    expect((await rewrapEvents()).map((e) => e.details)).toEqual([event!.details, { rewrapped: 0, already_current: 3, signing_keys: 1, cookie_keys: 1, client_secrets: 1 }]);
  });

  test('the running servers after the rewrap: the one on B (A previous) reloads nothing and keeps working; the one on A alone keeps its keys in memory and logs each failed check', async () => {
    // Several key checks (1 s) after the rewrap.
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    const [current, stale] = servers;
    // The watcher compares kids: a rewrap keeps them, so nothing is rebuilt, and its reloads decrypt.
    expect(current!.log()).not.toContain('keys.reloaded');
    expect(current!.log()).not.toContain('checking keys failed');
    expect(await jwksKids(current!.issuer)).toEqual(kids);
    const refreshed = await refresh(current!.issuer);
    expect(refreshed.status).toBe(200);
    refreshToken = refreshed.body.refresh_token;
    expect(kids).toContain(decodeProtectedHeader(refreshed.body.access_token).kid);

    expect(stale!.log()).toContain('checking keys failed');
    expect(stale!.log()).toContain('GATEHOUSE_KEY_ENCRYPTION_KEY is not the key the data was encrypted with');
    expect(stale!.log()).not.toContain(A);
    expect(await jwksKids(stale!.issuer)).toEqual(kids);

    for (const s of servers.splice(0)) await s.running.stop();
  });

  test('step 3, KEK B alone: starts with the same JWKS; the refresh token from before refreshes; the session and the legacy secret work', async () => {
    const app = await start({ [KEK]: B });
    expect(app.config.previousKeyEncryptionKeys).toEqual([]);
    expect(app.config.warnings.join()).not.toContain(PREVIOUS);
    expect(await jwksKids(app.issuer)).toEqual(kids);
    const refreshed = await refresh(app.issuer);
    expect(refreshed.status).toBe(200);
    expect(kids).toContain(decodeProtectedHeader(refreshed.body.access_token).kid);
    await authorizeWithSession(app.issuer);
    expect((await legacyClientExchange(app.issuer)).status).toBe(200);
  });

  test('an instance with only the old key A now fails to start, saying what to do', async () => {
    const result = await gatehouse(['serve'], { ...dbEnv(), [KEK]: A, PORT: '0', GATEHOUSE_ADMIN_PORT: '0' });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(
      'cannot decrypt a stored secret: GATEHOUSE_KEY_ENCRYPTION_KEY is not the key the data was encrypted with (after replacing it, keep the old key in GATEHOUSE_PREVIOUS_KEY_ENCRYPTION_KEYS until `gatehouse keys rewrap` has run)',
    );
    expect(result.stdout).not.toContain('Gatehouse is running');
    for (const secret of [A, B]) expect(result.stderr).not.toContain(secret);
  });
});
