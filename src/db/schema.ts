/**
 * Table types for Kysely. `test/contract/schema.test.ts` checks them against the migrated database.
 */
import type { ColumnType, Generated } from 'kysely';

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type Json<T> = ColumnType<T, string, string>;

export interface OidcPayloadsTable {
  model: string;
  id: string;
  payload: Json<Record<string, unknown>>;
  grant_id: string | null;
  uid: string | null;
  account_id: string | null;
  client_id: string | null;
  expires_at: Date | null;
  consumed_at: Date | null;
  created_at: Generated<Date>;
  /** RefreshToken only: the digest of the refresh token this one replaced (migration 0010, rotation grace). */
  rotated_from: Generated<string | null>;
  /** RefreshToken only: its one grace use is spent, or it was replaced by a grace retry (migration 0010). */
  reused_at: Generated<Date | null>;
}

export type ClientStatus = 'pending' | 'approved' | 'rejected' | 'suspended';
/** Resource URI → the scopes a client may ever receive there. */
export type ClientCeiling = Record<string, string[]>;

export interface ClientsTable {
  client_id: string;
  metadata: Json<Record<string, unknown>>;
  client_secret_enc: string | null;
  /** SHA-256 (hex) of the client secret; see migration 0005. */
  client_secret_hash: ColumnType<string | null, string | null | undefined, string | null>;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
  status: ColumnType<ClientStatus, ClientStatus | undefined, ClientStatus>;
  registration_method: ColumnType<'dcr' | 'cimd', 'dcr' | 'cimd' | undefined, 'dcr' | 'cimd'>;
  source_ip: string | null;
  user_agent: string | null;
  /** null: no ceiling beyond what each MCP server offers. */
  ceiling: ColumnType<ClientCeiling | null, string | null | undefined, string | null>;
  approved_redirect_uris: ColumnType<string[] | null, string | null | undefined, string | null>;
  status_reason: string | null;
  status_changed_at: Timestamp | null;
  status_changed_by: string | null;
  last_used_at: Timestamp | null;
  requested: ColumnType<Record<string, string[]>, string | undefined, string>;
  /** See clients/recognition.ts and migration 0007. */
  metadata_fingerprint: ColumnType<string | null, string | null | undefined, string | null>;
}

export interface ClientMetadataDocumentsTable {
  client_id: string;
  document: Json<Record<string, unknown>>;
  fetched_at: Timestamp;
  expires_at: Timestamp;
}

export interface ResourceScope {
  name: string;
  description: string;
  /**
   * The narrower scopes of the same resource that this broader scope satisfies (`notes:admin`
   * includes `notes:read`), as declared: not the transitive closure. The key is absent when there
   * are none. Data for resource servers; the authorization server's consent and ceilings ignore it.
   */
  includes?: string[];
}

export interface ResourcesTable {
  id: Generated<string>;
  uri: string;
  name: string;
  scopes: Json<ResourceScope[]>;
  default_scopes: Json<string[]>;
  access_token_ttl: number;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
}

export interface AccountsTable {
  id: Generated<string>;
  email: string;
  password_hash: string;
  disabled_at: Date | null;
  role: ColumnType<'user' | 'admin', 'user' | 'admin' | undefined, 'user' | 'admin'>;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
}

export interface AuditEventsTable {
  id: Generated<string>;
  occurred_at: Generated<Date>;
  event: string;
  actor: string | null;
  client_id: string | null;
  account_id: string | null;
  resource: string | null;
  source_ip: string | null;
  user_agent: string | null;
  request_id: string | null;
  details: ColumnType<Record<string, unknown>, string | undefined, never>;
  /** Set by the chain trigger on rows written before migration 0009; NULL since. */
  prev_hash: ColumnType<string | null, never, never>;
  hash: ColumnType<string | null, never, never>;
  /** The writing transaction (xid8, as text), stamped by the insert trigger (migration 0009); NULL on older rows. */
  txid: ColumnType<string | null, never, never>;
  /** `<key id>.<nonce>.<HMAC>` over the row's fields (src/audit/audit-mac.ts); NULL on rows written before 0009. */
  mac: string | null;
}

/** Signed checkpoints of the audit trail (migration 0009, src/audit/checkpoint.ts); append-only. */
export interface AuditCheckpointsTable {
  seq: string;
  epoch: number;
  floor_id: string;
  horizon: string;
  last_txid: string | null;
  last_id: string;
  row_count: number;
  ids: string;
  leaves: Uint8Array;
  root: string;
  invalid_ids: string;
  prev_digest: string;
  digest: string;
  key_id: string;
  signature: string;
  sealed_at: Date;
}

export interface AdminSessionsTable {
  id: string;
  account_id: string;
  csrf_token: string;
  created_at: Generated<Date>;
  last_seen_at: Generated<Date>;
  expires_at: Timestamp;
}

export interface SignInAttemptsTable {
  key: string;
  failures: Generated<number>;
  locked_until: Timestamp | null;
  updated_at: Generated<Date>;
}

export interface AdminApiTokensTable {
  id: Generated<string>;
  account_id: string;
  name: string;
  token_digest: string;
  created_at: Generated<Date>;
  last_used_at: Timestamp | null;
  revoked_at: Timestamp | null;
}

export interface RateLimitCountersTable {
  key: string;
  window_start: Timestamp;
  hits: number;
}

export interface KeysTable {
  kid: string;
  use: 'sig' | 'cookie';
  alg: string | null;
  public_jwk: Json<Record<string, unknown>> | null;
  private_enc: string;
  created_at: Generated<Date>;
  retired_at: Timestamp | null;
  /** Signing keys: when it starts signing (null: since it was created). */
  activates_at: Timestamp | null;
  /** Signing keys: when it leaves the JWKS (null: not scheduled). */
  unpublish_at: Timestamp | null;
}

export interface Database {
  oidc_payloads: OidcPayloadsTable;
  clients: ClientsTable;
  client_metadata_documents: ClientMetadataDocumentsTable;
  resources: ResourcesTable;
  accounts: AccountsTable;
  keys: KeysTable;
  audit_events: AuditEventsTable;
  audit_checkpoints: AuditCheckpointsTable;
  admin_sessions: AdminSessionsTable;
  sign_in_attempts: SignInAttemptsTable;
  admin_api_tokens: AdminApiTokensTable;
  rate_limit_counters: RateLimitCountersTable;
}
