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
