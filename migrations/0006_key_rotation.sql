-- Signing-key rotation: a new key is published before it signs (activates_at), and a retired key
-- stays published until every token it signed has expired (unpublish_at).
ALTER TABLE keys ADD COLUMN activates_at timestamptz, ADD COLUMN unpublish_at timestamptz;
