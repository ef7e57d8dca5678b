-- Token requests write in one statement (src/db/unit-of-work.ts, "deferred" units of work): the
-- statement consumes the code or refresh token, stores its successor and the audit row together.
-- If the consumption found nothing (a concurrent redemption won), this aborts the whole statement,
-- so nothing else it carried is kept.
CREATE FUNCTION gatehouse_assert(ok boolean, message text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  IF NOT ok THEN
    RAISE EXCEPTION USING ERRCODE = 'GH001', MESSAGE = message;
  END IF;
  RETURN true;
END;
$$;
