-- The audit trail without a global lock, tamper-evident against the application's own database
-- credentials (issue 14 §4; docs/security.md I-16, I-28 to I-31).
--
-- Until now (0005) every INSERT took a global advisory lock and chained the row to the one before
-- it: every token request of every instance waited on it, and it proved nothing against the
-- database's credentials (a forged INSERT was chained like any other; the owner could disable the
-- trigger, edit rows and recompute every hash). From here on:
-- - writers only append: the trigger below stamps the writing transaction's id and the time, takes
--   no lock and reads no other row. Gatehouse adds `mac`, an HMAC over the row's fields under a key
--   derived from the key-encryption key, which is never in the database (src/audit/audit-mac.ts);
-- - the sealer (src/audit/sealer.ts) reads rows below the transaction horizon, in (txid, id) order,
--   and appends signed, chained checkpoints to `audit_checkpoints`;
-- - the application connects as a member of `gatehouse_runtime`, which may only SELECT and INSERT
--   on both tables and owns nothing, so it can neither change a row nor disable a trigger.
-- Rows written before this keep `prev_hash` and `hash` (still verified by the old algorithm,
-- `audit_event_content` stays); new rows leave them NULL. The first checkpoint covers the old rows.

DROP TRIGGER audit_events_chain ON audit_events;
DROP FUNCTION audit_events_chain();

ALTER TABLE audit_events ADD COLUMN txid xid8, ADD COLUMN mac text;

-- The trigger assigns the id (the column default no longer does, so no value is spent twice): a
-- writer cannot pick an id, e.g. one that sits among old events, or one a later row will need.
ALTER TABLE audit_events ALTER COLUMN id DROP DEFAULT;

CREATE FUNCTION audit_events_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- Whatever the writer sent for these is ignored.
  NEW.id := nextval(pg_get_serial_sequence('audit_events', 'id'));
  NEW.txid := pg_current_xact_id();
  NEW.occurred_at := now();
  NEW.prev_hash := NULL;
  NEW.hash := NULL;
  RETURN NEW;
END;
$$;
CREATE TRIGGER audit_events_stamp BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION audit_events_stamp();

-- The sealer's scan: rows after a (txid, id) position, below the horizon.
CREATE INDEX audit_events_seal_order ON audit_events (txid, id);
-- A copy of a row keeps its MAC, nonce included: refused here, and reported by `audit verify`.
CREATE UNIQUE INDEX audit_events_mac ON audit_events (mac);

-- Signed checkpoints (src/audit/checkpoint.ts): which rows, in which order, with which leaf hashes.
CREATE TABLE audit_checkpoints (
  seq          bigint      PRIMARY KEY CHECK (seq > 0),
  epoch        integer     NOT NULL,              -- a new one after a restore into another cluster
  floor_id     bigint      NOT NULL,              -- the epoch seals only rows with a greater id
  horizon      xid8        NOT NULL,              -- pg_snapshot_xmin of the sealing transaction
  last_txid    xid8,                              -- position after this checkpoint: the last row's
  last_id      bigint      NOT NULL,              --   txid (NULL: a row from before 0009) and id
  row_count    integer     NOT NULL,
  ids          text        NOT NULL,              -- the rows, in sealing order: "17-30,32,31"
  leaves       bytea       NOT NULL,              -- their leaf hashes, 32 bytes each, in that order
  root         text        NOT NULL,              -- RFC 6962 Merkle root over the leaves (hex)
  invalid_ids  text        NOT NULL,              -- rows whose MAC did not verify when sealed, or '-'
  prev_digest  text        NOT NULL,              -- the previous checkpoint's digest, or 'genesis'
  digest       text        NOT NULL UNIQUE,       -- SHA-256 of the signed body
  key_id       text        NOT NULL,              -- fingerprint of the Ed25519 public key
  signature    text        NOT NULL,
  sealed_at    timestamptz NOT NULL
);

-- Append-only, like audit_events (0004): one function for both, naming the table.
CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END;
$$;
CREATE TRIGGER audit_checkpoints_no_update_or_delete BEFORE UPDATE OR DELETE ON audit_checkpoints
  FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
  FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

-- The least-privilege runtime role (docs/deployment.md, "The runtime role"). NOLOGIN: a deployment
-- grants it to the login role its instances use. It never owns anything, so it cannot ALTER a table
-- or disable a trigger; on the audit tables it may only read and append.
--
-- Roles belong to the cluster, not the database: another database on the same cluster may create it
-- at the same moment (the test suite migrates many in parallel), and the migrating role may lack
-- CREATEROLE (then create the role by hand and run the grants below again); the embedded database
-- may not support roles at all. In each case this block says so and the migration goes on.
--
-- Migrations after this one: tables they create get the ordinary grants by the default privileges
-- below (when the same role migrates); an append-only table must REVOKE UPDATE, DELETE from
-- gatehouse_runtime itself.
DO $$
DECLARE
  s text := current_schema();
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'gatehouse_runtime') THEN
    BEGIN
      CREATE ROLE gatehouse_runtime NOLOGIN;
    EXCEPTION
      WHEN duplicate_object OR unique_violation THEN
        NULL; -- created meanwhile, by the migration of another database on this cluster
      WHEN insufficient_privilege THEN
        RAISE NOTICE 'role gatehouse_runtime does not exist and % may not create it: create it (docs/deployment.md, "The runtime role") and run its grants', current_user;
        RETURN;
      WHEN OTHERS THEN
        RAISE NOTICE 'role gatehouse_runtime not created (%): this database does not support roles; grants skipped', SQLERRM;
        RETURN;
    END;
  END IF;
  EXECUTE format('GRANT USAGE ON SCHEMA %I TO gatehouse_runtime', s);
  EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO gatehouse_runtime', s);
  EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO gatehouse_runtime', s);
  EXECUTE format('GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA %I TO gatehouse_runtime', s);
  -- Read and append only, on the audit trail; read only, on the migrator's own tables.
  REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON audit_events, audit_checkpoints FROM gatehouse_runtime;
  BEGIN
    REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON kysely_migration, kysely_migration_lock FROM gatehouse_runtime;
  EXCEPTION WHEN undefined_table THEN
    NULL; -- applied without Kysely's migrator: there are no migrator tables
  END;
  -- What later migrations of this role create.
  EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO gatehouse_runtime', s);
  EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT USAGE, SELECT ON SEQUENCES TO gatehouse_runtime', s);
  EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT EXECUTE ON FUNCTIONS TO gatehouse_runtime', s);
EXCEPTION
  WHEN OTHERS THEN
    RAISE NOTICE 'gatehouse_runtime: grants skipped (%); run them by hand (docs/deployment.md, "The runtime role")', SQLERRM;
END;
$$;
