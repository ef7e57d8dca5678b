-- Rotation grace (issue 14 §1, docs/security.md I-32): a refresh token remembers the token it
-- replaced (`rotated_from`, its digest), so a client that lost the answer to a refresh and presents
-- the old token again, once and soon, gets a new successor that replaces the undelivered one
-- instead of having its grant revoked. `reused_at` marks a token whose one grace use is spent (or a
-- successor that was replaced): it never gets another.
ALTER TABLE oidc_payloads ADD COLUMN rotated_from text, ADD COLUMN reused_at timestamptz;
CREATE INDEX oidc_payloads_rotated_from ON oidc_payloads (rotated_from) WHERE rotated_from IS NOT NULL;

-- No late commits (issue 14 §2): a write whose request Gatehouse has already answered with an
-- error, or given up on, must never commit afterwards (a frozen database that resumes still holds
-- the statement in its socket). Gatehouse computes, in the database's own clock, the last moment
-- at which a commit is still in time, and this refuses to commit past it. It runs as the last
-- step before COMMIT (src/db/database.ts) or as the last expression of a one-statement batch
-- (src/db/unit-of-work.ts); `done` only forces the batch's other parts to run first.
CREATE FUNCTION gatehouse_commit_by(deadline timestamptz, done bigint DEFAULT 0) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  IF clock_timestamp() >= deadline THEN
    RAISE EXCEPTION USING ERRCODE = 'GH002', MESSAGE = 'too late to commit: the request was answered or given up on already';
  END IF;
  RETURN true;
END;
$$;
