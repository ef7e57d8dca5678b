/**
 * Recognising a client that registers again (issue 4 §3). MCP clients often register afresh on
 * every start or for every server they connect to; without this, each installation of the same
 * software would be one more pending client for an administrator to approve, and a rejected client
 * could come back as a new one simply by registering again.
 *
 * The rule: a dynamically registered *public* client (`token_endpoint_auth_method: none`) whose
 * complete metadata — name, redirect URIs, grant types, software_id and software_version when sent,
 * everything but its id and issue time — equals an existing registered client's is that client.
 * The registration answers 201 with the existing client_id, whatever the existing client's status
 * (pending stays pending, rejected stays rejected, an approved client keeps its ceiling).
 *
 * Why it is safe: a public client's id is not a secret, and the recognised client has exactly the
 * same redirect URIs, so whoever registers again can receive codes nowhere they could not already.
 * Confidential clients are never recognised: their secret exists only in the first answer.
 */
import { createHash } from 'node:crypto';
import { requestContext } from '../http/request-context.ts';

/** Fields that differ between two registrations of the same client. */
const PER_REGISTRATION = new Set(['client_id', 'client_id_issued_at', 'client_secret', 'client_secret_expires_at']);

function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((k) => [k, canonical((value as Record<string, unknown>)[k])]),
    );
  }
  return value;
}

/** The fingerprint of a registered client's metadata, or undefined when it must never be recognised. */
export function metadataFingerprint(metadata: Record<string, unknown>): string | undefined {
  if (metadata.token_endpoint_auth_method !== 'none' || metadata.client_secret !== undefined) return undefined;
  const kept = Object.fromEntries(Object.entries(metadata).filter(([k, v]) => !PER_REGISTRATION.has(k) && v !== undefined));
  return createHash('sha256').update(JSON.stringify(canonical(kept))).digest('base64url');
}

const MEMO_KEY = 'recognition:client';

export interface Recognition {
  /** The id oidc-provider generated for this registration, never stored. */
  generatedId: string;
  /** The existing client this registration is. */
  clientId: string;
  issuedAt: number;
  status: string;
}

/** Called by the storage adapter in place of storing a duplicate. */
export function noteRecognised(recognition: Recognition): void {
  requestContext()?.memo.set(MEMO_KEY, recognition);
}

/** The recognition made during this request, if any. */
export function recognisedInThisRequest(): Recognition | undefined {
  return requestContext()?.memo.get(MEMO_KEY) as Recognition | undefined;
}
