/**
 * Encryption at rest under the key-encryption key (KEK): AES-256-GCM with a random 96-bit IV and
 * the record's purpose as associated data, so a ciphertext cannot be moved to another record.
 *
 * KEK rotation: the box encrypts only under the current key, and decrypts under the current key or
 * any previous one (`GATEHOUSE_PREVIOUS_KEY_ENCRYPTION_KEYS`). The ciphertext does not name its
 * key: GCM authentication tells which one fits (a wrong key fails the tag check). `gatehouse keys
 * rewrap` ({@link SecretBox.rewrap}) re-encrypts what still needs a previous key, after which the
 * previous keys can be removed.
 *
 * Not checked here: whether a plaintext is well-formed (callers parse it), or whether a purpose is
 * the right one for a record (callers build it from the record's identity).
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

/** Public on purpose: used only when no KEK is configured outside production, with a warning. */
export const DEVELOPMENT_KEK = createHash('sha256').update('gatehouse development key-encryption key').digest();

/** A stored secret that no configured key decrypts (stable code for callers to switch on). */
export class UndecryptableSecretError extends Error {
  override readonly name = 'UndecryptableSecretError';
  readonly code = 'ERR_SECRET_UNDECRYPTABLE';
}

/** What {@link SecretBox.open} found. */
export interface OpenedSecret {
  plaintext: string;
  /** True when only a previous key decrypted it: `gatehouse keys rewrap` should re-encrypt it. */
  underPreviousKey: boolean;
}

export interface SecretBox {
  /** Encrypts under the current key. */
  encrypt(plaintext: string, purpose: string): string;
  /** Decrypts under the current key, else a previous one; throws {@link UndecryptableSecretError} when none fits. */
  decrypt(ciphertext: string, purpose: string): string;
  /** Like {@link decrypt}, and tells whether a previous key was needed (never which key, nor the key). */
  open(ciphertext: string, purpose: string): OpenedSecret;
  /**
   * The ciphertext under the current key: the same string when it already is (`changed: false`),
   * else a fresh encryption of its plaintext. Throws like {@link decrypt}.
   */
  rewrap(ciphertext: string, purpose: string): { ciphertext: string; changed: boolean };
}

/**
 * @param kek the current key (32 bytes); undefined means the public development key.
 * @param previous keys accepted for decryption only, tried in order after the current key.
 */
export function createSecretBox(kek: Buffer | undefined, previous: readonly Buffer[] = []): SecretBox {
  const key = kek ?? DEVELOPMENT_KEK;
  if (key.length !== 32) throw new Error('the key-encryption key must be 32 bytes');
  if (previous.some((k) => k.length !== 32)) throw new Error('every previous key-encryption key must be 32 bytes');
  const older = previous.filter((k) => !k.equals(key));
  const noKeyFits = older.length
    ? 'cannot decrypt a stored secret: GATEHOUSE_KEY_ENCRYPTION_KEY is not the key the data was encrypted with, nor is any key in GATEHOUSE_PREVIOUS_KEY_ENCRYPTION_KEYS'
    : 'cannot decrypt a stored secret: GATEHOUSE_KEY_ENCRYPTION_KEY is not the key the data was encrypted with (after replacing it, keep the old key in GATEHOUSE_PREVIOUS_KEY_ENCRYPTION_KEYS until `gatehouse keys rewrap` has run)';

  function encrypt(plaintext: string, purpose: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', key, iv);
    cipher.setAAD(Buffer.from(purpose));
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final(), cipher.getAuthTag()]);
    return `v1.${iv.toString('base64url')}.${body.toString('base64url')}`;
  }

  /** The plaintext under `candidate`, or undefined when the tag does not authenticate. */
  function tryKey(candidate: Buffer, iv: Buffer, body: Buffer, purpose: string): string | undefined {
    const decipher = createDecipheriv('aes-256-gcm', candidate, iv);
    decipher.setAAD(Buffer.from(purpose));
    decipher.setAuthTag(body.subarray(body.length - 16));
    try {
      return Buffer.concat([decipher.update(body.subarray(0, body.length - 16)), decipher.final()]).toString('utf8');
    } catch {
      return undefined;
    }
  }

  function open(ciphertext: string, purpose: string): OpenedSecret {
    const [version, ivPart, bodyPart, extra] = ciphertext.split('.');
    if (version !== 'v1' || !ivPart || !bodyPart || extra !== undefined) throw new Error('unrecognised ciphertext format');
    const iv = Buffer.from(ivPart, 'base64url');
    const body = Buffer.from(bodyPart, 'base64url');
    if (iv.length !== 12 || body.length < 16) throw new Error('unrecognised ciphertext format');
    const current = tryKey(key, iv, body, purpose);
    if (current !== undefined) return { plaintext: current, underPreviousKey: false };
    for (const candidate of older) {
      const plaintext = tryKey(candidate, iv, body, purpose);
      if (plaintext !== undefined) return { plaintext, underPreviousKey: true };
    }
    throw new UndecryptableSecretError(noKeyFits);
  }

  return {
    encrypt,
    open,
    decrypt: (ciphertext, purpose) => open(ciphertext, purpose).plaintext,
    rewrap(ciphertext, purpose) {
      const opened = open(ciphertext, purpose);
      return opened.underPreviousKey ? { ciphertext: encrypt(opened.plaintext, purpose), changed: true } : { ciphertext, changed: false };
    },
  };
}
