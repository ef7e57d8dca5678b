/**
 * Encryption at rest under the key-encryption key (KEK): AES-256-GCM with a random 96-bit IV and
 * the record's purpose as associated data, so a ciphertext cannot be moved to another record.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

/** Public on purpose: used only when no KEK is configured outside production, with a warning. */
export const DEVELOPMENT_KEK = createHash('sha256').update('gatehouse development key-encryption key').digest();

export interface SecretBox {
  encrypt(plaintext: string, purpose: string): string;
  decrypt(ciphertext: string, purpose: string): string;
}

export function createSecretBox(kek: Buffer | undefined): SecretBox {
  const key = kek ?? DEVELOPMENT_KEK;
  if (key.length !== 32) throw new Error('the key-encryption key must be 32 bytes');
  return {
    encrypt(plaintext, purpose) {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      cipher.setAAD(Buffer.from(purpose));
      const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final(), cipher.getAuthTag()]);
      return `v1.${iv.toString('base64url')}.${body.toString('base64url')}`;
    },
    decrypt(ciphertext, purpose) {
      const [version, ivPart, bodyPart] = ciphertext.split('.');
      if (version !== 'v1' || !ivPart || !bodyPart) throw new Error('unrecognised ciphertext format');
      const body = Buffer.from(bodyPart, 'base64url');
      const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(ivPart, 'base64url'));
      decipher.setAAD(Buffer.from(purpose));
      decipher.setAuthTag(body.subarray(body.length - 16));
      try {
        return Buffer.concat([decipher.update(body.subarray(0, body.length - 16)), decipher.final()]).toString('utf8');
      } catch {
        throw new Error(
          'cannot decrypt a stored secret: GATEHOUSE_KEY_ENCRYPTION_KEY is not the key the data was encrypted with',
        );
      }
    },
  };
}
