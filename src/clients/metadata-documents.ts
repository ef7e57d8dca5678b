/**
 * Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document; MCP authorization
 * 2026-07-28 prefers them to DCR): a client_id that is an https URL names a JSON document, served
 * by the client's vendor, describing the client.
 *
 * Gatehouse fetches the document with the SSRF guard of safe-fetch.ts, validates it (§4.1), and
 * caches it in PostgreSQL for as long as its cache headers allow, clamped to [min, max] (§4.3;
 * errors and invalid documents are never cached, §4.4), so every instance sees the same document
 * and a restart does not refetch. Concurrent misses for one URL in one process share one fetch.
 */
import { requestContext } from '../http/request-context.ts';
import { sql } from 'kysely';
import type { DB } from '../db/database.ts';
import { current } from '../db/unit-of-work.ts';
import type { RateLimiter } from '../http/rate-limit.ts';
import { normalizeClientMetadata } from './redirect-uris.ts';
import { FetchRefusedError, type FetchedDocument } from './safe-fetch.ts';

/** Why a metadata document cannot be used; the description is safe to show the user and admin. */
export class MetadataDocumentError extends Error {
  /**
   * @param message what the requester is told (at /authorize anyone can be the requester).
   * @param detail what only the log and the audit event get: why a fetch was refused before any
   *   document came back (an address check says what a name resolves to: a DNS oracle for strangers).
   */
  constructor(
    message: string,
    readonly detail?: string,
  ) {
    super(message);
    this.name = 'MetadataDocumentError';
  }
}

/** The URI-valued metadata that must be https in a document (CIMD §4.1 and oidc-provider's rule). */
const HTTPS_ONLY_FIELDS = ['client_uri', 'logo_uri', 'tos_uri', 'policy_uri', 'jwks_uri'];
/** CIMD §4.1: a document cannot hold a shared secret, since anyone can read it. */
const SHARED_SECRET_METHODS = new Set(['client_secret_basic', 'client_secret_post', 'client_secret_jwt']);

/** Does this client_id name a metadata document (rather than a registered client)? */
export function looksLikeClientIdUrl(id: string): boolean {
  return /^https?:\/\//i.test(id);
}

/**
 * CIMD §3: an https URL with a path, no fragment, no credentials, no dot segments. Returns the
 * problem, or undefined when the URL is a valid client_id.
 */
export function clientIdUrlProblem(id: string): string | undefined {
  if (!id.startsWith('https://')) return 'a client_id URL must use https';
  if (/[\s\x00-\x1f\x7f\\]/.test(id)) return 'a client_id URL must not contain whitespace, control characters or backslashes';
  const url = URL.parse(id);
  if (!url) return 'the client_id is not a valid URL';
  if (id.includes('#')) return 'a client_id URL must not contain a fragment';
  if (url.username || url.password || /^https:\/\/[^/?#]*@/.test(id)) return 'a client_id URL must not contain credentials';
  const rawPath = id.slice('https://'.length).replace(/^[^/?#]*/, '').split('?')[0] ?? '';
  if (rawPath === '' || rawPath === '/') return 'a client_id URL must have a path';
  if (rawPath.split('/').some((segment) => ['.', '..'].includes(segment.replace(/%2e/gi, '.')))) {
    return 'a client_id URL must not contain . or .. segments';
  }
  return undefined;
}

/** Seconds to cache a response, from Cache-Control max-age (or Expires), clamped to [min, max]. */
export function cacheSeconds(headers: FetchedDocument['headers'], bounds: { min: number; max: number }): number {
  const cacheControl = String(headers['cache-control'] ?? '').toLowerCase();
  let seconds: number | undefined;
  if (/(?:^|,)\s*(?:no-store|no-cache)\b/.test(cacheControl)) seconds = 0;
  const maxAge = /(?:^|,)\s*max-age\s*=\s*"?(\d+)"?/.exec(cacheControl);
  if (seconds === undefined && maxAge) seconds = Number(maxAge[1]);
  if (seconds === undefined && typeof headers.expires === 'string') {
    const at = Date.parse(headers.expires);
    if (!Number.isNaN(at)) seconds = Math.floor((at - Date.now()) / 1000);
  }
  return Math.max(bounds.min, Math.min(bounds.max, seconds ?? bounds.min));
}

/** Validates a fetched document for `id` (CIMD §4.1). Returns the metadata, or throws. */
export function validateDocument(id: string, fetched: FetchedDocument): Record<string, unknown> {
  if (fetched.status !== 200) throw new MetadataDocumentError(`the client metadata document answered HTTP ${fetched.status}, not 200`);
  let document: unknown;
  try {
    document = JSON.parse(fetched.body.toString('utf8'));
  } catch {
    throw new MetadataDocumentError('the client metadata document is not valid JSON');
  }
  if (typeof document !== 'object' || document === null || Array.isArray(document)) {
    throw new MetadataDocumentError('the client metadata document is not a JSON object');
  }
  const metadata = document as Record<string, unknown>;
  if (metadata.client_id !== id) {
    throw new MetadataDocumentError('the client metadata document\'s client_id is not exactly the URL it was fetched from');
  }
  if (typeof metadata.client_name !== 'string' || !metadata.client_name.trim()) {
    throw new MetadataDocumentError('the client metadata document has no client_name');
  }
  if (!Array.isArray(metadata.redirect_uris) || metadata.redirect_uris.length === 0) {
    throw new MetadataDocumentError('the client metadata document has no redirect_uris');
  }
  if (SHARED_SECRET_METHODS.has(String(metadata.token_endpoint_auth_method))) {
    throw new MetadataDocumentError(
      `the client metadata document uses ${String(metadata.token_endpoint_auth_method)}; a public document cannot hold a shared secret`,
    );
  }
  if ('client_secret' in metadata || 'client_secret_expires_at' in metadata) {
    throw new MetadataDocumentError('the client metadata document must not contain a client_secret');
  }
  for (const field of HTTPS_ONLY_FIELDS) {
    if (field in metadata && URL.parse(String(metadata[field]))?.protocol !== 'https:') {
      throw new MetadataDocumentError(`the client metadata document's ${field} must be an https URL`);
    }
  }
  // Checked here too (oidc-provider checks again on every use) so that a document with unusable
  // redirect URIs is refused before it is cached.
  const problem = normalizeClientMetadata({ ...metadata });
  if (problem) throw new MetadataDocumentError(`the client metadata document is invalid: ${problem.description}`);
  return metadata;
}

/** A document's metadata; `fresh` when it was fetched (not read from the cache) for this request. */
export interface ResolvedDocument {
  metadata: Record<string, unknown>;
  fresh: boolean;
}

export interface MetadataDocumentsDeps {
  db: DB;
  fetch: (url: string) => Promise<FetchedDocument>;
  cacheBounds: { min: number; max: number };
  /** Per-host fetch limit (CIMD §6.6: the AS must not become a traffic amplifier). */
  fetchLimit: { perMinute: number; limiter: RateLimiter };
}

export function createMetadataDocuments(deps: MetadataDocumentsDeps) {
  const inFlight = new Map<string, Promise<ResolvedDocument>>();
  // One answer per document per request: oidc-provider looks a client up more than once in a
  // request (again when rendering an error), and a failing fetch must not be retried within it.

  async function lookup(id: string): Promise<ResolvedDocument> {
    const problem = clientIdUrlProblem(id);
    if (problem) throw new MetadataDocumentError(problem);
    const cached = await current(deps.db)
      .selectFrom('client_metadata_documents')
      .select('document')
      .where('client_id', '=', id)
      .where('expires_at', '>', sql<Date>`now()`)
      .executeTakeFirst();
    if (cached) return { metadata: cached.document, fresh: false };
    let pending = inFlight.get(id);
    if (!pending) {
      pending = fetchAndStore(id).finally(() => inFlight.delete(id));
      inFlight.set(id, pending);
    }
    return pending;
  }

  async function fetchAndStore(id: string): Promise<ResolvedDocument> {
    const host = new URL(id).host;
    const limit = await deps.fetchLimit.limiter.hit(`cimd-fetch:${host}`, deps.fetchLimit.perMinute, 60);
    if (!limit.allowed) {
      throw new MetadataDocumentError(`too many client metadata documents fetched from ${host} in the last minute: try again in ${limit.retryAfter} seconds`);
    }
    let fetched: FetchedDocument;
    try {
      fetched = await deps.fetch(id);
    } catch (error) {
      // Issue 15 §6: the reason (what the name resolves to, whether the address answered) is for the
      // administrator, in the audit event and the log; the requester learns only that it failed.
      if (error instanceof FetchRefusedError) throw new MetadataDocumentError('the client metadata document could not be fetched from its URL', error.message);
      throw error;
    }
    const metadata = validateDocument(id, fetched);
    const seconds = cacheSeconds(fetched.headers, deps.cacheBounds);
    // In the request's transaction when there is one (PGlite has a single connection; a second
    // one would wait for it forever). If that request fails, the document is simply fetched again.
    await current(deps.db)
      .insertInto('client_metadata_documents')
      .values({
        client_id: id,
        document: JSON.stringify(metadata),
        fetched_at: sql<Date>`now()`,
        expires_at: sql<Date>`now() + make_interval(secs => ${seconds})`,
      })
      .onConflict((oc) =>
        oc.column('client_id').doUpdateSet({
          document: JSON.stringify(metadata),
          fetched_at: sql<Date>`now()`,
          expires_at: sql<Date>`now() + make_interval(secs => ${seconds})`,
        }),
      )
      .execute();
    return { metadata, fresh: true };
  }

  return {
    /** The document's metadata for `id`, from the shared cache or freshly fetched. Throws MetadataDocumentError. */
    async resolve(id: string): Promise<ResolvedDocument> {
      // One resolution per HTTP request (oidc-provider looks a client up twice on its error path).
      const memo = requestContext()?.memo;
      const key = `metadata-document:${id}`;
      let answer = memo?.get(key) as Promise<ResolvedDocument> | undefined;
      if (!answer) {
        answer = lookup(id);
        memo?.set(key, answer);
      }
      const { metadata, fresh } = await answer;
      return { metadata: { ...metadata }, fresh };
    },
  };
}

export type MetadataDocuments = ReturnType<typeof createMetadataDocuments>;
