-- The audit trail becomes tamper-evident: every row carries the hash of the previous row and its
-- own hash over its content and that previous hash. Rows are chained in one order across every
-- instance: the insert trigger takes a transaction-level advisory lock and only then assigns the
-- row's id, so id order is chain order (and commit order). `gatehouse audit verify` recomputes it.
ALTER TABLE audit_events ADD COLUMN prev_hash text, ADD COLUMN hash text;

CREATE FUNCTION audit_event_content(e audit_events) RETURNS text LANGUAGE sql STABLE AS $$
  SELECT concat_ws(E'\x1f',
    e.id::text,
    to_char(e.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    e.event, coalesce(e.actor, ''), coalesce(e.client_id, ''), coalesce(e.account_id, ''),
    coalesce(e.resource, ''), coalesce(e.source_ip, ''), coalesce(e.user_agent, ''),
    coalesce(e.request_id, ''), e.details::text)
$$;

CREATE FUNCTION audit_events_chain() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(7245015813);  -- 'gatehouse audit chain'
  NEW.id := nextval(pg_get_serial_sequence('audit_events', 'id'));
  NEW.occurred_at := coalesce(NEW.occurred_at, now());
  NEW.prev_hash := coalesce((SELECT hash FROM audit_events ORDER BY id DESC LIMIT 1), 'genesis');
  NEW.hash := encode(sha256(convert_to(NEW.prev_hash || E'\x1e' || audit_event_content(NEW), 'UTF8')), 'hex');
  RETURN NEW;
END;
$$;
CREATE TRIGGER audit_events_chain BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION audit_events_chain();

-- Client secrets are stored as SHA-256 digests (they are 32+ random bytes that Gatehouse generates,
-- so a fast hash is enough); the encrypted column stays only for secrets stored before this.
ALTER TABLE clients ADD COLUMN client_secret_hash text;
