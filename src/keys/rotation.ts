/**
 * Signing-key rotation, as `gatehouse keys rotate` and the scheduled rotation both run it: the new
 * key's lead time, and how long the retired key stays published (the longest access-token
 * lifetime of any MCP server, so no resource server ever meets a token signed by a key it can no
 * longer find).
 */
import type { AuditLog } from '../audit/audit-log.ts';
import type { ResourcesService } from '../resources/resources.service.ts';
import type { KeysService } from './keys.service.ts';

type RotationDeps = { keys: KeysService; resources: ResourcesService; audit: AuditLog };
type Rotated = { kid: string; activatesAt: Date; retiredUnpublishAt: Date };

/** Rotates now (`gatehouse keys rotate`, the console). */
export async function rotateSigningKey(deps: RotationDeps, options: { leadSeconds: number; defaultTokenTtl: number; actor: string }): Promise<Rotated> {
  return (await rotate(deps, options))!;
}

/**
 * The schedule: rotates only when the active key is `intervalSeconds` old and no rotation is
 * scheduled, decided under the keys table's lock, so that many instances rotate once.
 */
export async function rotateSigningKeyIfDue(deps: RotationDeps, options: { leadSeconds: number; defaultTokenTtl: number; actor: string; intervalSeconds: number }): Promise<Rotated | undefined> {
  return rotate(deps, options, options.intervalSeconds);
}

async function rotate(deps: RotationDeps, options: { leadSeconds: number; defaultTokenTtl: number; actor: string }, ifDueAfterSeconds?: number): Promise<Rotated | undefined> {
  const ttls = (await deps.resources.list()).map((r) => r.accessTokenTtl);
  const tokenTtlSeconds = Math.max(options.defaultTokenTtl, ...ttls);
  const rotated = await deps.keys.rotate({ leadSeconds: options.leadSeconds, tokenTtlSeconds, ...(ifDueAfterSeconds !== undefined ? { ifDueAfterSeconds } : {}) });
  if (!rotated) return undefined;
  await deps.audit.record({
    event: 'key.rotated',
    actor: options.actor,
    details: { kid: rotated.kid, activates_at: rotated.activatesAt.toISOString(), retired_keys_unpublish_at: rotated.retiredUnpublishAt.toISOString() },
  });
  return rotated;
}
