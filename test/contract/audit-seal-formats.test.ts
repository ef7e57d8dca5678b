/**
 * The audit trail's formats, which outlive any one version (rows and checkpoints are verified years
 * later, by this code or by anyone's): RFC 6962 Merkle hashes, RFC 8785 canonical JSON, the row MAC,
 * the checkpoint body, its signature and its JSON line, and the keys derived from the KEK.
 */
import { createHash } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { createAuditKeys, keyIdOfRaw, publicKeyFromRaw } from '../../src/audit/audit-keys.ts';
import { canonicalJson, checkMac, computeMac, type MacFields } from '../../src/audit/audit-mac.ts';
import {
  checkSignature,
  checkpointLine,
  decodeIds,
  digestOf,
  encodeIds,
  parseCheckpointLine,
  renderBody,
  signBody,
  type Checkpoint,
  type CheckpointBody,
} from '../../src/audit/checkpoint.ts';
import { leafHash, merkleRoot } from '../../src/audit/merkle.ts';

const KEK = Buffer.alloc(32, 0x21);
const OLD_KEK = Buffer.alloc(32, 0x42);

/** RFC 6962 §2.1 written out top-down, to check the bottom-up implementation against. */
function mth(leaves: Buffer[]): Buffer {
  if (leaves.length === 0) return createHash('sha256').digest();
  if (leaves.length === 1) return leaves[0]!;
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return createHash('sha256').update(Buffer.from([1])).update(mth(leaves.slice(0, k))).update(mth(leaves.slice(k))).digest();
}

describe('Merkle tree hashes (RFC 6962 §2.1)', () => {
  test('known values: the empty tree, the leaf of empty data', () => {
    expect(merkleRoot([]).toString('hex')).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    expect(leafHash('').toString('hex')).toBe('6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d');
  });

  test('the same root as the top-down definition, for every size up to 70', () => {
    const leaves = Array.from({ length: 70 }, (_, i) => leafHash(`leaf ${i}`));
    for (let n = 0; n <= leaves.length; n++) expect(merkleRoot(leaves.slice(0, n)).equals(mth(leaves.slice(0, n))), `n = ${n}`).toBe(true);
  });
});

describe('canonical JSON (RFC 8785)', () => {
  test('sorted keys at every depth, no whitespace, JSON.stringify semantics', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { z: null, y: 'é' }], c: true }, u: undefined })).toBe('{"a":{"c":true,"d":[3,{"y":"é","z":null}]},"b":1}');
    expect(canonicalJson({ '10': 1, '9': 2, a: 3 })).toBe('{"10":1,"9":2,"a":3}');
    expect(canonicalJson({ at: new Date(0), n: 1.5e21, x: 0.1 })).toBe('{"at":"1970-01-01T00:00:00.000Z","n":1.5e+21,"x":0.1}');
    expect(canonicalJson('lone \ud800 surrogate')).toBe('"lone \ufffd surrogate"');
  });
});

const FIELDS: MacFields = {
  event: 'token.issued',
  actor: 'user:6a1f0000-0000-4000-8000-00000000a11c',
  client_id: 'client-1',
  account_id: '6a1f0000-0000-4000-8000-00000000a11c',
  resource: 'https://mcp.example.com',
  source_ip: '192.0.2.7',
  user_agent: 'Agent/1.0',
  request_id: '2f1c0a7e-0000-4000-8000-000000000001',
  details: { scope: 'files:read', grant_type: 'authorization_code', nested: { b: 2, a: 1 } },
};

describe('the row MAC', () => {
  const keys = createAuditKeys(KEK);

  test('<key id>.<nonce>.<tag>, a fresh nonce each time, verifying on what the database gives back', () => {
    const mac = computeMac(keys, FIELDS);
    expect(mac).toMatch(new RegExp(`^${keys.mac.id}\\.[A-Za-z0-9_-]{22}\\.[A-Za-z0-9_-]{43}$`));
    expect(computeMac(keys, FIELDS)).not.toBe(mac);
    // jsonb gives the keys back in its own order.
    expect(checkMac(keys, mac, { ...FIELDS, details: { nested: { a: 1, b: 2 }, grant_type: 'authorization_code', scope: 'files:read' } })).toEqual({ ok: true, keyId: keys.mac.id });
  });

  test('any field changed, a missing, malformed or unknown-key MAC: each is told apart', () => {
    const mac = computeMac(keys, FIELDS);
    for (const [field, value] of Object.entries({ event: 'token.refreshed', actor: null, client_id: 'client-2', account_id: 'x', resource: null, source_ip: '192.0.2.8', user_agent: '', request_id: null, details: { scope: 'files:write' } })) {
      expect(checkMac(keys, mac, { ...FIELDS, [field]: value }), field).toEqual({ ok: false, reason: 'mismatch' });
    }
    expect(checkMac(keys, null, FIELDS)).toEqual({ ok: false, reason: 'missing' });
    expect(checkMac(keys, 'forged', FIELDS)).toEqual({ ok: false, reason: 'malformed' });
    const other = computeMac(createAuditKeys(OLD_KEK), FIELDS);
    expect(checkMac(keys, other, FIELDS)).toEqual({ ok: false, reason: 'unknown-key', keyId: other.split('.')[0] });
  });

  test('a previous key-encryption key\'s MACs still verify while it is configured', () => {
    const old = computeMac(createAuditKeys(OLD_KEK), FIELDS);
    expect(checkMac(createAuditKeys(KEK, [OLD_KEK]), old, FIELDS)).toMatchObject({ ok: true });
  });
});

describe('keys derived from the key-encryption key', () => {
  test('deterministic, distinct per KEK, and the signing key id is the public key\'s fingerprint', () => {
    const a = createAuditKeys(KEK);
    const b = createAuditKeys(Buffer.from(KEK));
    expect([a.mac.id, a.signer.keyId, a.signer.publicKeyRaw]).toEqual([b.mac.id, b.signer.keyId, b.signer.publicKeyRaw]);
    const c = createAuditKeys(OLD_KEK);
    expect(c.mac.id).not.toBe(a.mac.id);
    expect(c.signer.keyId).not.toBe(a.signer.keyId);
    expect(keyIdOfRaw(a.signer.publicKeyRaw)).toBe(a.signer.keyId);
    expect(publicKeyFromRaw(a.signer.publicKeyRaw)?.equals(a.signer.publicKey)).toBe(true);
    // Neither key is the KEK, nor each other.
    expect(a.mac.key.equals(KEK)).toBe(false);
    expect(createAuditKeys(undefined).development).toBe(true);
  });
});

describe('checkpoints', () => {
  const keys = createAuditKeys(KEK);
  const body: CheckpointBody = {
    seq: 7n,
    epoch: 1,
    floorId: 0n,
    horizon: 845n,
    lastTxid: 844n,
    lastId: 457n,
    ids: [438n, 439n, 440n, 457n, 456n],
    invalid: [457n],
    root: 'ab'.repeat(32),
    prevDigest: 'cd'.repeat(32),
    sealedAt: new Date('2026-01-02T03:04:05.678Z'),
    keyId: keys.signer.keyId,
  };

  test('the signed body, line by line', () => {
    expect(renderBody(body)).toBe(
      [
        'gatehouse.audit.checkpoint.v1',
        'seq 7',
        'epoch 1 floor 0',
        'horizon 845',
        'last 844 457',
        'count 5',
        'ids 438-440,457,456',
        'invalid 457',
        `root ${'ab'.repeat(32)}`,
        `prev ${'cd'.repeat(32)}`,
        'sealed_at 2026-01-02T03:04:05.678Z',
        `key ${keys.signer.keyId}`,
        '',
      ].join('\n'),
    );
    expect(renderBody({ ...body, lastTxid: null, ids: [], invalid: [] })).toContain('\nlast - 457\ncount 0\nids -\ninvalid -\n');
  });

  test('signed and verified; an edit, another key, or a previous KEK\'s key each come out as they should', () => {
    const signed = { ...body, ...signBody(keys, body) };
    expect(signed.digest).toBe(digestOf(body));
    expect(checkSignature(keys, signed)).toBe('valid');
    expect(checkSignature(keys, { ...signed, horizon: 846n })).toBe('bad-digest');
    const other = createAuditKeys(OLD_KEK);
    const byOther = { ...body, keyId: other.signer.keyId, ...signBody(other, { ...body, keyId: other.signer.keyId }) };
    expect(checkSignature(keys, byOther)).toBe('unknown-key');
    expect(checkSignature(createAuditKeys(KEK, [OLD_KEK]), byOther)).toBe('valid');
    expect(checkSignature(keys, { ...byOther, keyId: keys.signer.keyId, digest: digestOf({ ...body, keyId: keys.signer.keyId }) })).toBe('bad-signature');
  });

  test('its JSON line carries everything needed to check it again', () => {
    const cp: Checkpoint = { ...body, leaves: [], ...signBody(keys, body) };
    const line = JSON.parse(JSON.stringify(checkpointLine(cp, keys.signer.publicKeyRaw))) as unknown;
    const parsed = parseCheckpointLine(line)!;
    expect(parsed).toMatchObject({ seq: 7n, ids: body.ids, invalid: [457n], digest: cp.digest, publicKey: keys.signer.publicKeyRaw });
    expect(checkSignature(createAuditKeys(OLD_KEK), parsed, publicKeyFromRaw(parsed.publicKey!))).toBe('valid');
    expect(parseCheckpointLine({ type: 'gatehouse.audit', id: '1' })).toBeUndefined();
  });

  test('id lists: runs in sealing order, and a stored list is not trusted to be small', () => {
    expect(encodeIds([])).toBe('-');
    expect(encodeIds([1n, 2n, 3n, 7n, 5n, 6n])).toBe('1-3,7,5-6');
    expect(decodeIds('1-3,7,5-6')).toEqual([1n, 2n, 3n, 7n, 5n, 6n]);
    expect(() => decodeIds('5-1')).toThrow(/malformed/);
    expect(() => decodeIds('1;2')).toThrow(/malformed/);
    expect(() => decodeIds('1-99999999999')).toThrow(/more than/);
  });
});
