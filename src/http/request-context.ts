/**
 * Who is asking, for code deep inside oidc-provider's callbacks (the storage adapter, policy
 * checks) that has no Koa context: the client's address and user agent, recorded with every new
 * client, and per-request memos.
 */
import { AsyncLocalStorage } from 'node:async_hooks';

export interface RequestContext {
  ip: string;
  userAgent: string | undefined;
  /** A random id, also sent as X-Request-Id, to tie log lines and audit events together. */
  requestId: string;
  /** Per-request memo; keys are namespaced by their owner. */
  memo: Map<string, unknown>;
}

const storage = new AsyncLocalStorage<RequestContext>();

export function runInRequestContext<T>(context: Omit<RequestContext, 'memo'>, work: () => Promise<T>): Promise<T> {
  return storage.run({ ...context, memo: new Map() }, work);
}

export function requestContext(): RequestContext | undefined {
  return storage.getStore();
}
