-- Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document), cached for every
-- instance as long as their HTTP cache headers allow (clamped). Only valid documents are stored.
CREATE TABLE client_metadata_documents (
  client_id   text        PRIMARY KEY,
  document    jsonb       NOT NULL,
  fetched_at  timestamptz NOT NULL,
  expires_at  timestamptz NOT NULL
);
