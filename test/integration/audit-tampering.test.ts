/**
 * Tampering with the audit trail, with the database's own credentials (issue 14 §4; docs/security.md
 * I-28–I-31): on a real app, real events are written and sealed, then each attack below is made the
 * way someone holding DATABASE_URL (the runtime role's, or the owner's) could make it, and the real
 * `gatehouse audit verify` (a child process, with the deployment's key-encryption key) must exit 3
 * naming what was touched. What the attacker cannot do is sign: the key is not in the database.
 */
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, test, vi } from 'vitest';
import { rowLeaf } from '../../src/audit/audit-row.ts';
import { createAuditRepository } from '../../src/audit/audit.repository.ts';
import { renderBody, type Checkpoint } from '../../src/audit/checkpoint.ts';
import { merkleRoot } from '../../src/audit/merkle.ts';
import { seed, startTestApp, type TestApp } from '../support/app.ts';
import { queryDatabase } from '../support/database.ts';
import { gatehouse, killAll } from '../support/gatehouse-process.ts';
import { obtainTokens, tokenRequest } from '../support/oauth.ts';
import { createRuntimeLogin, type RuntimeLogin } from '../support/runtime-role.ts';

afterEach(killAll);
vi.setConfig({ testTimeout: 120_000 });

/** startTestApp's key-encryption key: the CLI must have the deployment's. */
const KEK = '11'.repeat(32);

interface Trail {
  app: TestApp;
  url: string;
  /** Every line the app wrote to its audit sink (events and checkpoints). */
  sink: Array<Record<string, unknown>>;
  /** The ids of the rows written, in id order. */
  ids: string[];
  close(): Promise<void>;
}

/** An app with real events (a client's registration, sign-in, consent, code exchange, refresh), sealed. */
async function sealedTrail(): Promise<Trail> {
  const sink: Array<Record<string, unknown>> = [];
  const app = await startTestApp({ testOnly: { auditSink: { write: (line) => void sink.push(line), close: async () => {} } } });
  await seed(app);
  const { client, tokens } = await obtainTokens(app.issuer);
  expect((await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: tokens.body.refresh_token, client_id: client.client_id })).status).toBe(200);
  const outcome = await app.sealer.seal();
  expect(outcome).toMatchObject({ ran: true, invalid: [] });
  const ids = (await app.db.selectFrom('audit_events').select('id').orderBy('id').execute()).map((r) => String(r.id));
  expect(ids.length).toBeGreaterThanOrEqual(5);
  return { app, url: app.database.url!, sink, ids, close: () => app.close() };
}

const verifyCli = (url: string, args: string[] = []) =>
  gatehouse(['audit', 'verify', ...args], { env: { DATABASE_URL: url, GATEHOUSE_KEY_ENCRYPTION_KEY: KEK } });

/** As the database's owner: the append-only triggers off for `work`, then on again. */
async function asOwnerWithoutTriggers(url: string, table: 'audit_events' | 'audit_checkpoints', statements: Array<[string, unknown[]?]>) {
  await queryDatabase(url, `ALTER TABLE ${table} DISABLE TRIGGER USER`);
  try {
    for (const [text, values] of statements) await queryDatabase(url, text, values ?? []);
  } finally {
    await queryDatabase(url, `ALTER TABLE ${table} ENABLE TRIGGER USER`);
  }
}

function tampered(result: { code: number | null; stderr: string }) {
  expect(result.code, result.stderr).toBe(3);
  expect(result.stderr).toMatch(/^gatehouse: the audit trail was tampered with \(\d+ events and \d+ checkpoints? checked\):\n/);
  return result.stderr;
}

describe('on a sealed trail', () => {
  let trail: Trail;
  let runtime: RuntimeLogin;
  beforeAll(async () => {
    trail = await sealedTrail();
    runtime = await createRuntimeLogin();
  });
  afterAll(async () => {
    await trail?.close();
    await runtime?.drop();
  });

  test('an untouched trail verifies: exit 0, every event sealed', async () => {
    const intact = await verifyCli(trail.url);
    expect(intact.stderr).toBe('');
    expect(intact.code).toBe(0);
    expect(intact.stdout).toMatch(
      new RegExp(`^The audit trail is intact: ${trail.ids.length} events, ${trail.ids.length} sealed in 1 checkpoint \\(head: checkpoint 1, [0-9a-f]{64}, signed by key [0-9a-f]{16}\\), 0 waiting for the next seal \\(reported once older than 60 s\\)\\.\\n$`),
    );
  });

  test('a row INSERTed with the application\'s own privileges is forged: no MAC, a made-up one, or a copy', async () => {
    const asApp = (text: string, values: unknown[] = []) => queryDatabase<{ id: string }>(runtime.urlFor(trail.url), text, values);
    const [bare] = await asApp(`INSERT INTO audit_events (event, actor) VALUES ('admin.sign_in_succeeded', 'admin:mallory@example.com') RETURNING id::text AS id`);
    const [{ mac: real }] = (await queryDatabase<{ mac: string }>(trail.url, 'SELECT mac FROM audit_events WHERE id = $1', [trail.ids[0]])) as [{ mac: string }];
    const madeUp = `${real.split('.')[0]}.${'A'.repeat(22)}.${'B'.repeat(43)}`;
    const [guessed] = await asApp(`INSERT INTO audit_events (event, actor, mac) VALUES ('grant.revoked', 'admin:mallory@example.com', $1) RETURNING id::text AS id`, [madeUp]);
    // A copy of a real row keeps its MAC, nonce and all: refused outright.
    await expect(
      asApp(`INSERT INTO audit_events (event, actor, client_id, account_id, resource, source_ip, user_agent, request_id, details, mac)
             SELECT event, actor, client_id, account_id, resource, source_ip, user_agent, request_id, details, mac FROM audit_events WHERE id = $1`, [trail.ids[0]]),
    ).rejects.toMatchObject({ code: '23505' });

    // Before sealing: named as unsealed and forged.
    const unsealed = tampered(await verifyCli(trail.url));
    expect(unsealed).toContain(`  - event ${bare!.id}: not sealed yet, and it has no MAC: Gatehouse did not write it`);
    expect(unsealed).toContain(`  - event ${guessed!.id}: not sealed yet, and its MAC does not match its content`);

    // Sealing keeps them on the record as forged, for good.
    const sealed = await trail.app.sealer.seal();
    expect(sealed.ran && sealed.invalid.map(String)).toEqual([bare!.id, guessed!.id]);
    const after = tampered(await verifyCli(trail.url));
    expect(after).toContain(`  - event ${bare!.id}: forged: checkpoint 2 recorded that its MAC did not verify when it was sealed (it has no MAC`);
    expect(after).toContain(`  - event ${guessed!.id}: forged: checkpoint 2 recorded that its MAC did not verify when it was sealed (its MAC does not match its content`);
    expect(after.match(/^ {2}- /gm)).toHaveLength(2);
  });
});

describe('each attack on its own trail', () => {
  let trail: Trail;
  afterEach(async () => {
    await trail?.close();
  });

  test('an edited row (the owner, triggers disabled): its MAC and its checkpoint\'s leaf both say so', async () => {
    trail = await sealedTrail();
    const target = trail.ids[2]!;
    await asOwnerWithoutTriggers(trail.url, 'audit_events', [[`UPDATE audit_events SET actor = 'admin:someone-else', details = '{"scope": "everything"}' WHERE id = $1`, [target]]]);
    const stderr = tampered(await verifyCli(trail.url));
    expect(stderr).toContain(`  - event ${target}: it was edited after checkpoint 1 sealed it: its content no longer matches the checkpoint's leaf hash; its MAC does not match its content`);
    expect(stderr.match(/^ {2}- /gm)).toHaveLength(1);
  });

  test('an edited timestamp, which the MAC does not cover: the checkpoint\'s leaf does', async () => {
    trail = await sealedTrail();
    const target = trail.ids[1]!;
    await asOwnerWithoutTriggers(trail.url, 'audit_events', [[`UPDATE audit_events SET occurred_at = occurred_at - interval '3 days' WHERE id = $1`, [target]]]);
    const stderr = tampered(await verifyCli(trail.url));
    expect(stderr).toContain(`  - event ${target}: it was edited after checkpoint 1 sealed it: its content no longer matches the checkpoint's leaf hash; its id, txid or occurred_at`);
  });

  test('a deleted row: its checkpoint names it as removed', async () => {
    trail = await sealedTrail();
    const target = trail.ids[1]!;
    await asOwnerWithoutTriggers(trail.url, 'audit_events', [['DELETE FROM audit_events WHERE id = $1', [target]]]);
    const stderr = tampered(await verifyCli(trail.url));
    expect(stderr).toContain(`  - event ${target}: removed: checkpoint 1 sealed it, and it is no longer in the table`);
    expect(stderr.match(/^ {2}- /gm)).toHaveLength(1);
  });

  test('a table rewritten with every hash recomputed (leaves, root, digests, chain, a signature of the attacker\'s own) is caught by the signature', async () => {
    trail = await sealedTrail();
    const [edited, laundered] = [trail.ids[1]!, trail.ids[3]!];
    // One row edited; another turned into a "pre-0009" row (no txid, no MAC) with a valid old-style hash.
    await asOwnerWithoutTriggers(trail.url, 'audit_events', [
      [`UPDATE audit_events SET details = '{"scope": "everything"}' WHERE id = $1`, [edited]],
      [`UPDATE audit_events SET txid = NULL, mac = NULL, actor = 'admin:someone-else', prev_hash = 'genesis' WHERE id = $1`, [laundered]],
      [`UPDATE audit_events a SET hash = encode(sha256(convert_to(a.prev_hash || E'\\x1e' || audit_event_content(a), 'UTF8')), 'hex') WHERE id = $1`, [laundered]],
    ]);
    // Everything an attacker can recompute without the key, with the published algorithms.
    const repo = createAuditRepository(trail.app.db);
    const [checkpoint] = await repo.checkpoints({ withLeaves: true });
    const rows = new Map((await repo.rowsByIds(checkpoint!.ids)).map((r) => [r.id, r]));
    const leaves = checkpoint!.ids.map((id) => rowLeaf(rows.get(id)!));
    const attacker = generateKeyPairSync('ed25519');
    const resign = async (keyId: string) => {
      const forged: Checkpoint = { ...checkpoint!, leaves, root: merkleRoot(leaves).toString('hex'), keyId };
      const body = Buffer.from(renderBody(forged));
      const digest = createHash('sha256').update(body).digest('hex');
      const signature = sign(null, body, attacker.privateKey).toString('base64url');
      await asOwnerWithoutTriggers(trail.url, 'audit_checkpoints', [
        ['UPDATE audit_checkpoints SET leaves = $1, root = $2, key_id = $3, digest = $4, signature = $5 WHERE seq = 1', [Buffer.concat(leaves), forged.root, keyId, digest, signature]],
      ]);
    };
    await resign('badc0ffee0ddf00d');
    const stderr = tampered(await verifyCli(trail.url));
    expect(stderr).toContain('  - checkpoint 1: it is signed by key badc0ffee0ddf00d, which no configured key-encryption key derives, and no later checkpoint signed by a configured key chains to it');
    expect(stderr).toContain(`  - event ${edited}: its MAC does not match its content: the row was edited, or forged, yet checkpoint 1 sealed it as valid`);
    // The laundered row passes every check an attacker can satisfy; the checkpoint's signature is what gives it away.
    expect(stderr).not.toContain(`event ${laundered}:`);

    // Naming the deployment's key instead does not help: the signature is not that key's.
    await resign(checkpoint!.keyId);
    const renamed = tampered(await verifyCli(trail.url));
    expect(renamed).toContain(`  - checkpoint 1: its signature does not verify under key ${checkpoint!.keyId}: it was forged, or edited and re-hashed`);
  });

  test('a cut-off tail, its checkpoints deleted too, is caught against the checkpoints kept outside the database', async () => {
    trail = await sealedTrail();
    // More events, sealed in a second checkpoint, which the sink (the SIEM's copy) received.
    for (let i = 0; i < 3; i++) await trail.app.audit.record({ event: 'admin.signed_out', actor: `admin:tail-${i}` });
    await trail.app.sealer.seal();
    const tail = (await trail.app.db.selectFrom('audit_events').select('id').where('actor', 'like', 'admin:tail-%').orderBy('id').execute()).map((r) => String(r.id));
    const dir = await mkdtemp(path.join(tmpdir(), 'gatehouse-checkpoints-'));
    try {
      const sinkFile = path.join(dir, 'audit.jsonl');
      await writeFile(sinkFile, trail.sink.map((line) => `${JSON.stringify(line)}\n`).join(''));
      // `audit checkpoints` exports the same lines (digest for digest) as the sink received.
      const exported = await gatehouse(['audit', 'checkpoints'], { env: { DATABASE_URL: trail.url, GATEHOUSE_KEY_ENCRYPTION_KEY: KEK } });
      expect(exported.code, exported.stderr).toBe(0);
      const lines = exported.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines.map((l) => l.digest)).toEqual(trail.sink.filter((l) => l.type === 'gatehouse.audit.checkpoint').map((l) => l.digest));
      expect(lines.map((l) => l.seq)).toEqual(['1', '2']);

      await asOwnerWithoutTriggers(trail.url, 'audit_events', [[`DELETE FROM audit_events WHERE id = ANY($1::bigint[])`, [tail]]]);
      await asOwnerWithoutTriggers(trail.url, 'audit_checkpoints', [['DELETE FROM audit_checkpoints WHERE seq = 2']]);
      // The database alone now holds a consistent, shorter trail.
      expect((await verifyCli(trail.url)).code).toBe(0);
      const stderr = tampered(await verifyCli(trail.url, ['--checkpoints', sinkFile]));
      const span = tail.length === 3 && BigInt(tail[2]!) - BigInt(tail[0]!) === 2n ? `${tail[0]}–${tail[2]}` : tail.join(', ');
      expect(stderr).toMatch(new RegExp(`  - checkpoint 2: checkpoint 2 in the file \\(events ${span}, sealed [^)]+\\) is not in the database: the trail was cut back and its checkpoints deleted`));
      expect(stderr.match(/^ {2}- /gm)).toHaveLength(1);
      // The untouched checkpoint in the file matches.
      const intactFile = path.join(dir, 'first.jsonl');
      await writeFile(intactFile, `${JSON.stringify(lines[0])}\n`);
      const first = await verifyCli(trail.url, ['--checkpoints', intactFile]);
      expect(first.code, first.stderr).toBe(0);
      expect(first.stdout).toContain('Every one of the 1 checkpoints in the file is in the database, unchanged.');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
