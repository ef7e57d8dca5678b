/**
 * Who is approved on arrival. By default nobody: every client that registers itself or arrives by
 * metadata document waits for an administrator (issue 3 §2). An administrator may configure:
 * - `automatic`: every new client is approved at once, with no ceiling beyond what each MCP server
 *   offers — for a personal or development Gatehouse only;
 * - trusted metadata-document hosts: clients whose client_id URL is on one of these hosts (for
 *   example `claude.ai vscode.dev`) are approved on arrival, with a scope ceiling: by default each
 *   MCP server's default scopes (`defaults`), or everything (`all`). The document is still fetched
 *   and checked, and the consent page still asks the user.
 */
import type { ClientCeiling } from '../db/schema.ts';
import type { ClientPolicy } from './clients.repository.ts';

export interface TrustPolicyConfig {
  approval: 'manual' | 'automatic';
  trustedDocumentHosts: string[];
  trustedCeiling: 'defaults' | 'all';
  /** The registered MCP servers' default scopes, for the `defaults` ceiling. */
  defaultScopes: () => Promise<Array<{ uri: string; defaultScopes: string[] }>>;
}

export interface InitialDecision extends ClientPolicy {
  reason: string | null;
}

export function createTrustPolicy(config: TrustPolicyConfig) {
  const trustedHosts = new Set(config.trustedDocumentHosts.map((h) => h.toLowerCase()));
  return {
    /** The status a client starts with. */
    async decide(arrival: { method: 'dcr' | 'cimd'; clientId: string }): Promise<InitialDecision> {
      if (config.approval === 'automatic') {
        return { status: 'approved', ceiling: null, reason: 'approved on arrival: GATEHOUSE_CLIENT_APPROVAL=automatic' };
      }
      if (arrival.method === 'cimd') {
        const host = URL.parse(arrival.clientId)?.host.toLowerCase();
        if (host && trustedHosts.has(host)) {
          const reason = `approved on arrival: ${host} is a trusted metadata-document host`;
          if (config.trustedCeiling === 'all') return { status: 'approved', ceiling: null, reason };
          const ceiling: ClientCeiling = {};
          for (const r of await config.defaultScopes()) if (r.defaultScopes.length) ceiling[r.uri] = [...r.defaultScopes];
          return { status: 'approved', ceiling, reason: `${reason}, with each MCP server's default scopes as its ceiling` };
        }
      }
      return { status: 'pending', ceiling: {}, reason: null };
    },
  };
}

export type TrustPolicy = ReturnType<typeof createTrustPolicy>;
