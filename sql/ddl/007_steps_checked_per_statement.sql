-- A session's steps are checked against it once per statement, not once per step row.
--
-- Steps are written 24 per session and hundreds of sessions per statement. The row-level foreign
-- key of 002 checked every step row on its own (a lookup and a lock of its session, per row): on
-- 20,000 users that was about 85 µs of PostgreSQL time per migrated user, a third of everything
-- the database did for a user (pg_stat_statements). The same two rules, set-based:
-- - every inserted step belongs to an existing session (one anti-join over the statement's rows);
-- - deleting sessions deletes their steps (one delete over the statement's deleted sessions).
-- What the row-level key gave besides, a lock on the session while its steps go in, is not
-- needed: a session and its steps are written in one transaction, and a session is deleted only
-- by a rollback, under its user's legacy row lock, never while it is being written.
ALTER TABLE onboarding_steps DROP CONSTRAINT IF EXISTS onboarding_steps_session_id_fkey;

CREATE OR REPLACE FUNCTION onboarding_steps_need_a_session() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    orphan uuid;
BEGIN
    SELECT i.session_id INTO orphan
    FROM inserted AS i
    WHERE NOT EXISTS (SELECT 1 FROM onboarding_sessions AS s WHERE s.session_id = i.session_id)
    LIMIT 1;
    IF orphan IS NOT NULL THEN
        RAISE EXCEPTION 'onboarding_steps: session % does not exist', orphan
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS onboarding_steps_need_a_session ON onboarding_steps;
CREATE TRIGGER onboarding_steps_need_a_session
    AFTER INSERT ON onboarding_steps
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION onboarding_steps_need_a_session();

CREATE OR REPLACE FUNCTION onboarding_sessions_take_their_steps() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM onboarding_steps AS st USING deleted AS d WHERE st.session_id = d.session_id;
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS onboarding_sessions_take_their_steps ON onboarding_sessions;
CREATE TRIGGER onboarding_sessions_take_their_steps
    AFTER DELETE ON onboarding_sessions
    REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT EXECUTE FUNCTION onboarding_sessions_take_their_steps();
