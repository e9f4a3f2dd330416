-- A statement's new steps are checked once per session, not once per step row.
--
-- 007's check probed onboarding_sessions for every inserted step row: 24 probes of the same
-- session for each new session. Probing each distinct session once gives the same answer, in a
-- fifth of the time (1.8 instead of 8.5 ms for a statement of 500 sessions).
--
-- Always by the primary key, whatever the statistics say. A trigger's statement is planned once
-- per connection and kept until the table's statistics change. Planned while
-- onboarding_sessions was analyzed nearly empty, as at the start of a migration, the check chose
-- to read the whole table: once per statement (hashing it, for an anti-join) or once per session
-- (for a probe), and went on doing so as the table grew, until autovacuum analyzed it again
-- (13.7 ms a statement at 99,000 sessions for the hash; tests/integration/
-- test_steps_check_on_servers.py sets that trap). A correlated subquery with LIMIT is a probe per
-- session by construction, and with sequential scans off the probe goes by the index.
CREATE OR REPLACE FUNCTION onboarding_steps_need_a_session() RETURNS trigger
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    orphan uuid;
BEGIN
    SELECT i.session_id INTO orphan
    FROM (SELECT DISTINCT session_id FROM inserted) AS i
    WHERE (SELECT true FROM onboarding_sessions AS s WHERE s.session_id = i.session_id LIMIT 1)
          IS NULL
    LIMIT 1;
    IF orphan IS NOT NULL THEN
        RAISE EXCEPTION 'onboarding_steps: session % does not exist', orphan
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END;
$$;
