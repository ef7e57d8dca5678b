-- Client onboarding: every client that arrives unannounced (dynamic registration or metadata
-- document) is recorded here and starts pending until an administrator approves it, with a
-- ceiling of the MCP servers and scopes it may ever receive.
ALTER TABLE clients
  ADD COLUMN status text NOT NULL DEFAULT 'pending'
    CHECK (status IN ('pending', 'approved', 'rejected', 'suspended')),
  ADD COLUMN registration_method text NOT NULL DEFAULT 'dcr'
    CHECK (registration_method IN ('dcr', 'cimd')),
  ADD COLUMN source_ip text,
  ADD COLUMN user_agent text,
  -- { "<canonical resource URI>": ["scope", …] }; NULL means no ceiling beyond what each MCP
  -- server offers (only an explicit trust policy or an administrator sets that).
  ADD COLUMN ceiling jsonb DEFAULT '{}'::jsonb,
  -- Metadata documents: the redirect URIs the administrator approved, to notice a change.
  ADD COLUMN approved_redirect_uris jsonb,
  ADD COLUMN status_reason text,
  ADD COLUMN status_changed_at timestamptz,
  ADD COLUMN status_changed_by text,
  ADD COLUMN last_used_at timestamptz,
  -- What the client asked for, for the administrator's decision: { "<resource URI>": [scopes] }
  -- from authorization attempts while unapproved, and "*" for the scope in its registration.
  ADD COLUMN requested jsonb NOT NULL DEFAULT '{}'::jsonb;
CREATE INDEX clients_status ON clients (status, created_at DESC);
