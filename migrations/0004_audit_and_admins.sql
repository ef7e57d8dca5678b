-- The audit trail: one row per security-relevant event, append-only (a trigger refuses UPDATE,
-- DELETE and TRUNCATE). Never holds a secret: no tokens, codes, passwords or client secrets.
CREATE TABLE audit_events (
  id           bigserial   PRIMARY KEY,
  occurred_at  timestamptz NOT NULL DEFAULT now(),
  event        text        NOT NULL,
  actor        text,
  client_id    text,
  account_id   text,
  resource     text,
  source_ip    text,
  user_agent   text,
  request_id   text,
  details      jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_events_occurred_at ON audit_events (occurred_at DESC, id DESC);
CREATE INDEX audit_events_event ON audit_events (event, occurred_at DESC);
CREATE INDEX audit_events_client_id ON audit_events (client_id, occurred_at DESC) WHERE client_id IS NOT NULL;

CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_events is append-only';
END;
$$;
CREATE TRIGGER audit_events_no_update_or_delete BEFORE UPDATE OR DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
  FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

-- Administrators are accounts with the admin role.
ALTER TABLE accounts ADD COLUMN role text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin'));

-- Admin console sessions. `id` is the SHA-256 digest of the cookie value, never the value.
CREATE TABLE admin_sessions (
  id            text        PRIMARY KEY,
  account_id    uuid        NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  csrf_token    text        NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  last_seen_at  timestamptz NOT NULL DEFAULT now(),
  expires_at    timestamptz NOT NULL
);
CREATE INDEX admin_sessions_expires_at ON admin_sessions (expires_at);

-- Failed sign-ins, per account and per source address, for lockout with backoff.
CREATE TABLE sign_in_attempts (
  key           text        PRIMARY KEY,
  failures      integer     NOT NULL DEFAULT 0,
  locked_until  timestamptz,
  updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Personal admin API tokens; only the SHA-256 digest of the token is stored.
CREATE TABLE admin_api_tokens (
  id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  account_id    uuid        NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  name          text        NOT NULL,
  token_digest  text        NOT NULL UNIQUE,
  created_at    timestamptz NOT NULL DEFAULT now(),
  last_used_at  timestamptz,
  revoked_at    timestamptz
);

-- Fixed-window rate-limit counters shared by every instance (e.g. metadata-document fetches per host).
CREATE TABLE rate_limit_counters (
  key           text        PRIMARY KEY,
  window_start  timestamptz NOT NULL,
  hits          integer     NOT NULL
);
