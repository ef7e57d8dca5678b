/**
 * Signing-key rotation, as `gatehouse keys rotate` and the scheduled rotation both run it: the new
 * key's lead time, and how long the retired key stays published (the longest access-token
 * lifetime of any MCP server, so no resource server ever meets a token signed by a key it can no
 * longer find).
 */
import type { AuditLog } from '../audit/audit-log.ts';
import type { ResourcesService } from '../resources/resources.service.ts';
import type { KeysService } from './keys.service.ts';

export async function rotateSigningKey(deps: { keys: KeysService; resources: ResourcesService; audit: AuditLog }, options: { leadSeconds: number; defaultTokenTtl: number; actor: string }) {
  const ttls = (await deps.resources.list()).map((r) => r.accessTokenTtl);
  const tokenTtlSeconds = Math.max(options.defaultTokenTtl, ...ttls);
  const rotated = await deps.keys.rotate({ leadSeconds: options.leadSeconds, tokenTtlSeconds });
  await deps.audit.record({
    event: 'key.rotated',
    actor: options.actor,
    details: { kid: rotated.kid, activates_at: rotated.activatesAt.toISOString(), retired_keys_unpublish_at: rotated.retiredUnpublishAt.toISOString() },
  });
  return rotated;
}
