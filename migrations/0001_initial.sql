-- Gatehouse initial schema. Frozen once landed: later changes go in new files.

-- Every oidc-provider artefact except clients: sessions, interactions, grants, codes, tokens.
-- For token-like models (codes, refresh/access tokens, registration access tokens) `id` is the
-- SHA-256 digest of the value, never the value itself.
CREATE TABLE oidc_payloads (
  model        text        NOT NULL,
  id           text        NOT NULL,
  payload      jsonb       NOT NULL,
  grant_id     text,
  uid          text,
  account_id   text,
  client_id    text,
  expires_at   timestamptz,
  consumed_at  timestamptz,
  created_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (model, id)
);
CREATE INDEX oidc_payloads_grant_id ON oidc_payloads (grant_id) WHERE grant_id IS NOT NULL;
CREATE UNIQUE INDEX oidc_payloads_session_uid ON oidc_payloads (uid) WHERE model = 'Session';
CREATE INDEX oidc_payloads_expires_at ON oidc_payloads (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX oidc_payloads_grant_owner ON oidc_payloads (account_id, client_id) WHERE model = 'Grant';

-- OAuth clients registered dynamically (RFC 7591). The client secret, when there is one, is
-- encrypted under the key-encryption key and kept out of `metadata`.
CREATE TABLE clients (
  client_id          text        PRIMARY KEY,
  metadata           jsonb       NOT NULL,
  client_secret_enc  text,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now()
);

-- The MCP servers Gatehouse issues tokens for (RFC 8707 resource indicators).
CREATE TABLE resources (
  id                uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  uri               text        NOT NULL UNIQUE,
  name              text        NOT NULL,
  scopes            jsonb       NOT NULL DEFAULT '[]'::jsonb,
  default_scopes    jsonb       NOT NULL DEFAULT '[]'::jsonb,
  access_token_ttl  integer     NOT NULL CHECK (access_token_ttl > 0),
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now()
);

-- Local user accounts; passwords hashed with argon2id.
CREATE TABLE accounts (
  id             uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  email          text        NOT NULL,
  password_hash  text        NOT NULL,
  disabled_at    timestamptz,
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX accounts_email ON accounts (lower(email));

-- Signing keys (use = 'sig') and cookie-signing keys (use = 'cookie'). Private material is
-- encrypted under the key-encryption key; public_jwk is null for cookie keys.
CREATE TABLE keys (
  kid          text        PRIMARY KEY,
  use          text        NOT NULL CHECK (use IN ('sig', 'cookie')),
  alg          text,
  public_jwk   jsonb,
  private_enc  text        NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  retired_at   timestamptz
);
CREATE INDEX keys_use ON keys (use) WHERE retired_at IS NULL;
