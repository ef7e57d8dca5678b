/** The two oidc-provider internals bench/ceiling-server.ts uses to give the default in-memory adapter a larger store. */
declare module 'oidc-provider/lib/helpers/lru.js' {
  export default class LRU {
    constructor(options: { maxSize: number });
    get(key: string): unknown;
    set(key: string, value: unknown, options?: { maxAge?: number }): void;
    delete(key: string): void;
    clear(): void;
  }
}

declare module 'oidc-provider/lib/adapters/memory_adapter.js' {
  import type LRU from 'oidc-provider/lib/helpers/lru.js';
  import type { Adapter } from 'oidc-provider';
  /** The in-memory adapter oidc-provider uses when none is configured. */
  export default class MemoryAdapter implements Adapter {
    constructor(model: string, store?: LRU, clockTolerance?: number);
    upsert: Adapter['upsert'];
    find: Adapter['find'];
    findByUserCode: Adapter['findByUserCode'];
    findByUid: Adapter['findByUid'];
    consume: Adapter['consume'];
    destroy: Adapter['destroy'];
    revokeByGrantId: Adapter['revokeByGrantId'];
  }
}
