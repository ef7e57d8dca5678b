/**
 * Who is approved on arrival. By default nobody: every client that registers itself or arrives by
 * metadata document waits for an administrator (issue 3 §2). An administrator may configure:
 * - `automatic`: every new client is approved at once, with no ceiling beyond what each MCP server
 *   offers — for a personal or development Gatehouse only;
 * - trusted metadata-document hosts: clients whose client_id URL is on one of these hosts (for
 *   example `claude.ai vscode.dev`) are approved on arrival; the document is still fetched and
 *   checked, and the consent page still asks the user.
 */
import type { ClientPolicy } from './clients.repository.ts';

export interface TrustPolicyConfig {
  approval: 'manual' | 'automatic';
  trustedDocumentHosts: string[];
}

export interface InitialDecision extends ClientPolicy {
  reason: string | null;
}

export function createTrustPolicy(config: TrustPolicyConfig) {
  const trustedHosts = new Set(config.trustedDocumentHosts.map((h) => h.toLowerCase()));
  return {
    /** The status a client starts with. */
    decide(arrival: { method: 'dcr' | 'cimd'; clientId: string }): InitialDecision {
      if (config.approval === 'automatic') {
        return { status: 'approved', ceiling: null, reason: 'approved on arrival: GATEHOUSE_CLIENT_APPROVAL=automatic' };
      }
      if (arrival.method === 'cimd') {
        const host = URL.parse(arrival.clientId)?.host.toLowerCase();
        if (host && trustedHosts.has(host)) {
          return { status: 'approved', ceiling: null, reason: `approved on arrival: ${host} is a trusted metadata-document host` };
        }
      }
      return { status: 'pending', ceiling: {}, reason: null };
    },
  };
}

export type TrustPolicy = ReturnType<typeof createTrustPolicy>;
