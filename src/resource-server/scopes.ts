/**
 * Scopes: parsing the `scope` claim (RFC 9068 §2.2.3, RFC 6749 §3.3), the scope hierarchy a resource
 * declares in Gatehouse's registry (`scope_includes`: a broader scope satisfies the narrower ones it
 * includes, transitively), and which scopes an MCP message needs.
 */

/** Broader scope → the narrower scopes it includes, as declared (not necessarily transitive). */
export type ScopeIncludes = Readonly<Record<string, readonly string[]>>;

/**
 * The entry of `record` named `key`, only if the record itself has it: a scope, tool or method named
 * `constructor` or `toString` must not find Object.prototype's (issue 15 §9: a TypeError before).
 */
function own<T>(record: Readonly<Record<string, T>> | undefined, key: string): T | undefined {
  return record && Object.hasOwn(record, key) ? record[key] : undefined;
}

/** The scopes a space-separated `scope` claim grants (RFC 6749 §3.3), without duplicates. */
export function parseScopeClaim(claim: unknown): string[] {
  if (typeof claim !== 'string') return [];
  return [...new Set(claim.split(' ').filter(Boolean))];
}

/** Every scope `granted` amounts to under the hierarchy: the granted ones and all they include, transitively. */
export function effectiveScopes(granted: Iterable<string>, includes: ScopeIncludes = {}): Set<string> {
  const out = new Set<string>();
  const queue = [...granted];
  while (queue.length) {
    const scope = queue.pop()!;
    if (out.has(scope)) continue;
    out.add(scope);
    for (const narrower of own(includes, scope) ?? []) if (!out.has(narrower)) queue.push(narrower);
  }
  return out;
}

/** The required scopes that `granted` does not satisfy (empty: allowed). */
export function missingScopes(granted: Iterable<string>, required: Iterable<string>, includes: ScopeIncludes = {}): string[] {
  const have = effectiveScopes(granted, includes);
  return [...new Set(required)].filter((s) => !have.has(s));
}

/** Which scopes each kind of MCP request needs: a base for every request, and more per tool. */
export interface McpScopePolicy {
  /** Needed for any request (initialize, tools/list, …). */
  base?: readonly string[];
  /** Extra scopes per tool name, for `tools/call`. */
  tools?: Readonly<Record<string, readonly string[]>>;
  /** Extra scopes per JSON-RPC method (e.g. `resources/read`). */
  methods?: Readonly<Record<string, readonly string[]>>;
}

/**
 * The scopes a JSON-RPC message (or batch) sent to an MCP server needs under `policy`: the base
 * scopes plus those of every method and tool it calls. Ask for all of them in one challenge (MCP
 * authorization, "Scope challenge handling"), so a client upscopes once.
 */
export function requiredScopesForMcpMessage(message: unknown, policy: McpScopePolicy): string[] {
  const out = new Set(policy.base ?? []);
  for (const m of Array.isArray(message) ? message : [message]) {
    if (!m || typeof m !== 'object') continue;
    const { method, params } = m as { method?: unknown; params?: { name?: unknown } };
    if (typeof method !== 'string') continue;
    for (const s of own(policy.methods, method) ?? []) out.add(s);
    if (method === 'tools/call' && typeof params?.name === 'string') for (const s of own(policy.tools, params.name) ?? []) out.add(s);
  }
  return [...out];
}
