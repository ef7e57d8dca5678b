/**
 * A client's approval status and ceiling, as policy checks inside oidc-provider need them. The
 * storage adapter reads them with the client's metadata (same row, same query) and leaves them in
 * the request context, so enforcing approval costs no extra query on /token.
 */
import { requestContext } from '../http/request-context.ts';
import type { ClientPolicy, ClientsRepository } from './clients.repository.ts';

const key = (clientId: string) => `client-policy:${clientId}`;

/** An unknown client is treated like a pending one: it gets nothing. */
const UNKNOWN: ClientPolicy = { status: 'pending', ceiling: {} };

export function rememberClientPolicy(clientId: string, policy: ClientPolicy): void {
  requestContext()?.memo.set(key(clientId), policy);
}

export function createClientPolicyLookup(clients: ClientsRepository) {
  return async (clientId: string): Promise<ClientPolicy> => {
    const remembered = requestContext()?.memo.get(key(clientId)) as ClientPolicy | undefined;
    if (remembered) return remembered;
    const policy = (await clients.policy(clientId)) ?? UNKNOWN;
    rememberClientPolicy(clientId, policy);
    return policy;
  };
}

export type ClientPolicyLookup = ReturnType<typeof createClientPolicyLookup>;
