/**
 * Replacing the key-encryption key (`gatehouse keys rewrap`): every secret stored under a previous
 * KEK is re-encrypted under the current one, in one transaction, so that the previous keys can be
 * removed from every instance.
 *
 * The procedure without downtime (README, GATEHOUSE_PREVIOUS_KEY_ENCRYPTION_KEYS):
 * 1. every instance runs with the new key in GATEHOUSE_KEY_ENCRYPTION_KEY and the old one in
 *    GATEHOUSE_PREVIOUS_KEY_ENCRYPTION_KEYS (new secrets are written under the new key; old ones
 *    still decrypt);
 * 2. `gatehouse keys rewrap`;
 * 3. GATEHOUSE_PREVIOUS_KEY_ENCRYPTION_KEYS is removed from every instance.
 * A rewrap keeps every kid and every plaintext, so a running server's key watcher sees no change
 * and does not rebuild (it compares kids); its next reload decrypts the rewrapped rows with the
 * current key. An instance still on the old key alone cannot decrypt them: it keeps serving with
 * the keys it holds in memory, logs "checking keys failed" at every check, and fails to start
 * again — hence step 1 before step 2.
 *
 * Not done here: anything about the key itself (generating, storing or comparing KEKs is the
 * operator's; the box only says whether a value needed a previous key).
 */
import type { AuditLog } from '../audit/audit-log.ts';
import type { DB } from '../db/database.ts';
import { inUnitOfWork } from '../db/unit-of-work.ts';
import { createEncryptedSecretsRepository, type EncryptedSecret } from './encrypted-secrets.repository.ts';
import { keyPurpose } from './keys.service.ts';
import { UndecryptableSecretError, type SecretBox } from './secret-box.ts';

/** A record whose secret no configured key decrypts; named, never shown. */
export interface RewrapFailure {
  /** `signing key <kid>`, `cookie key <kid>` or `client secret of <client_id>`. */
  record: string;
  reason: string;
}

export interface RewrapReport {
  /** Secrets that needed a previous key and are now under the current one. */
  rewrapped: number;
  /** Secrets already under the current key (left as they were). */
  alreadyCurrent: number;
  /** Non-empty: nothing was changed and no event recorded. */
  failed: RewrapFailure[];
}

/** The associated data each kind of secret is encrypted with (client secrets: as src/oidc/adapter.ts decrypts them). */
function purposeOf(secret: EncryptedSecret): string {
  if (secret.kind === 'client_secret') return `client-secret:${secret.clientId}`;
  return keyPurpose(secret.kind === 'signing_key' ? 'sig' : 'cookie', secret.kid);
}

function describe(secret: EncryptedSecret): string {
  if (secret.kind === 'client_secret') return `client secret of ${secret.clientId}`;
  return `${secret.kind === 'signing_key' ? 'signing key' : 'cookie key'} ${secret.kid}`;
}

/**
 * Re-encrypts every stored secret under `secretBox`'s current key, all or nothing, and records
 * `keys.rewrapped` with counts only. When any secret cannot be decrypted, nothing changes and the
 * report names the records. Running it again is harmless: everything is then already current.
 */
export async function rewrapSecrets(deps: { db: DB; secretBox: SecretBox; audit: AuditLog }, options: { actor: string }): Promise<RewrapReport> {
  const repo = createEncryptedSecretsRepository(deps.db);
  return inUnitOfWork(
    deps.db,
    async (): Promise<RewrapReport> => {
      const secrets = await repo.listForUpdate();
      // Decrypt everything first: one undecryptable secret means no write at all.
      const planned: { secret: EncryptedSecret; ciphertext: string }[] = [];
      const failed: RewrapFailure[] = [];
      let alreadyCurrent = 0;
      const perKind = { signing_key: 0, cookie_key: 0, client_secret: 0 };
      for (const secret of secrets) {
        perKind[secret.kind] += 1;
        try {
          const result = deps.secretBox.rewrap(secret.ciphertext, purposeOf(secret));
          if (result.changed) planned.push({ secret, ciphertext: result.ciphertext });
          else alreadyCurrent += 1;
        } catch (error) {
          failed.push({
            record: describe(secret),
            reason: error instanceof UndecryptableSecretError ? 'no configured key-encryption key decrypts it' : (error as Error).message,
          });
        }
      }
      if (failed.length) return { rewrapped: 0, alreadyCurrent: 0, failed };
      for (const { secret, ciphertext } of planned) await repo.replace(secret, ciphertext);
      await deps.audit.record({
        event: 'keys.rewrapped',
        actor: options.actor,
        details: {
          rewrapped: planned.length,
          already_current: alreadyCurrent,
          signing_keys: perKind.signing_key,
          cookie_keys: perKind.cookie_key,
          client_secrets: perKind.client_secret,
        },
      });
      return { rewrapped: planned.length, alreadyCurrent, failed };
    },
    // A failure rolls back (only the locks were taken).
    (report) => report.failed.length === 0,
  );
}
