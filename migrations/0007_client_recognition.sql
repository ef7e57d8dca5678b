-- A public client that registers the same metadata again is recognised instead of stored twice
-- (issue 4 §3): the SHA-256 of its canonical metadata, for dynamically registered public clients
-- only (a confidential client's secret cannot be handed out twice). Not unique: two identical
-- registrations racing each other may both be stored, which is harmless.
ALTER TABLE clients ADD COLUMN metadata_fingerprint text;
CREATE INDEX clients_metadata_fingerprint ON clients (metadata_fingerprint) WHERE metadata_fingerprint IS NOT NULL;
