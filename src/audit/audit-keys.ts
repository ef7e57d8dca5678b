/**
 * The audit trail's keys, derived from the key-encryption key (KEK) and never stored anywhere:
 * - a MAC key: every row Gatehouse writes carries an HMAC-SHA256 over its fields under it
 *   (audit-mac.ts), so a row INSERTed with the database's credentials alone has no valid MAC;
 * - an Ed25519 signing key: the sealer signs each checkpoint with it (checkpoint.ts), so a
 *   checkpoint table rewritten with recomputed hashes no longer verifies.
 *
 * Both come from HKDF-SHA256 (RFC 5869) over the KEK, each with its own `info`, so neither reveals
 * the other or the KEK. The same KEK always gives the same keys: every instance and every CLI
 * command agrees without any key in the database (the CloudTrail model: the digest key is outside
 * the log's store). Keys derived from GATEHOUSE_PREVIOUS_KEY_ENCRYPTION_KEYS only verify, so rows and
 * checkpoints written before a KEK replacement still check out while the old key is configured;
 * once it is removed, checkpoints signed under it are vouched for by the later checkpoints that
 * chain to them (verify.ts).
 *
 * Not done here: choosing which key a stored MAC or signature names (callers look the id up in
 * {@link AuditKeys.macKeys} / {@link AuditKeys.verifiers}).
 */
import { createHash, createHmac, createPrivateKey, createPublicKey, hkdfSync, type KeyObject } from 'node:crypto';
import { DEVELOPMENT_KEK } from '../keys/secret-box.ts';

const MAC_INFO = 'gatehouse/audit/row-mac/v1';
const SIGNING_INFO = 'gatehouse/audit/checkpoint-signing/v1';
/** PKCS #8 wrapping of a raw Ed25519 seed (RFC 8410 §7): the fixed prefix, then the 32 bytes. */
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
/** SubjectPublicKeyInfo DER of an Ed25519 key ends with the raw 32-byte public key (RFC 8410 §4). */
const ED25519_RAW_LENGTH = 32;

export interface MacKey {
  /** Names the key in every MAC (`<id>.<nonce>.<tag>`): 16 hex characters, revealing nothing of the key. */
  id: string;
  key: Buffer;
}

export interface SigningKey {
  /** The fingerprint of the public key: the first 16 hex characters of SHA-256 over its 32 raw bytes. */
  keyId: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** The raw public key, base64url: published in checkpoint lines so that others can pin it. */
  publicKeyRaw: string;
}

export interface AuditKeys {
  /** Writes MACs. */
  mac: MacKey;
  /** Verifies MACs: the current key and each previous KEK's, by id. */
  macKeys: ReadonlyMap<string, Buffer>;
  /** Signs checkpoints. */
  signer: SigningKey;
  /** Verifies checkpoint signatures: the current public key and each previous KEK's, by key id. */
  verifiers: ReadonlyMap<string, KeyObject>;
  /** True when no KEK is configured and the public development key stands in (never in production). */
  development: boolean;
}

function hkdf(kek: Buffer, info: string): Buffer {
  return Buffer.from(hkdfSync('sha256', kek, Buffer.alloc(0), info, 32));
}

function macKeyOf(kek: Buffer): MacKey {
  const key = hkdf(kek, MAC_INFO);
  return { id: createHmac('sha256', key).update('gatehouse audit mac key id').digest('hex').slice(0, 16), key };
}

function signingKeyOf(kek: Buffer): SigningKey {
  const privateKey = createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, hkdf(kek, SIGNING_INFO)]), format: 'der', type: 'pkcs8' });
  const publicKey = createPublicKey(privateKey);
  const spki = publicKey.export({ format: 'der', type: 'spki' });
  const raw = spki.subarray(spki.length - ED25519_RAW_LENGTH);
  return { keyId: createHash('sha256').update(raw).digest('hex').slice(0, 16), privateKey, publicKey, publicKeyRaw: raw.toString('base64url') };
}

/** The public key of a checkpoint line (`public_key`, base64url raw Ed25519), or undefined when malformed. */
export function publicKeyFromRaw(raw: string): KeyObject | undefined {
  const bytes = Buffer.from(raw, 'base64url');
  if (bytes.length !== ED25519_RAW_LENGTH) return undefined;
  // SPKI DER for Ed25519: SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING { raw } } (RFC 8410 §4).
  const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), bytes]);
  try {
    return createPublicKey({ key: spki, format: 'der', type: 'spki' });
  } catch {
    return undefined;
  }
}

/** The key id (fingerprint) of a raw Ed25519 public key, base64url. */
export function keyIdOfRaw(raw: string): string {
  return createHash('sha256').update(Buffer.from(raw, 'base64url')).digest('hex').slice(0, 16);
}

/**
 * The audit keys for a deployment: `kek` as config.ts loads GATEHOUSE_KEY_ENCRYPTION_KEY (undefined:
 * the public development key, as createSecretBox does), `previous` as it loads
 * GATEHOUSE_PREVIOUS_KEY_ENCRYPTION_KEYS.
 */
export function createAuditKeys(kek: Buffer | undefined, previous: readonly Buffer[] = []): AuditKeys {
  const current = kek ?? DEVELOPMENT_KEK;
  if (current.length !== 32) throw new Error('the key-encryption key must be 32 bytes');
  const mac = macKeyOf(current);
  const signer = signingKeyOf(current);
  const macKeys = new Map<string, Buffer>([[mac.id, mac.key]]);
  const verifiers = new Map<string, KeyObject>([[signer.keyId, signer.publicKey]]);
  for (const old of previous) {
    if (old.length !== 32) throw new Error('every previous key-encryption key must be 32 bytes');
    const m = macKeyOf(old);
    const s = signingKeyOf(old);
    if (!macKeys.has(m.id)) macKeys.set(m.id, m.key);
    if (!verifiers.has(s.keyId)) verifiers.set(s.keyId, s.publicKey);
  }
  return { mac, macKeys, signer, verifiers, development: kek === undefined };
}
