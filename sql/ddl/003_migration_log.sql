-- Append-only audit trail of every action and outcome (contract §7). Rows are never changed:
-- a trigger refuses UPDATE, DELETE and TRUNCATE, so "the audit log keeps everything" holds.
CREATE TABLE IF NOT EXISTS onboarding_migration_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id  uuid NOT NULL,
    user_id     text NOT NULL,
    action      text NOT NULL,
    outcome     text NOT NULL,
    error_code  text,
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS onboarding_migration_log_request_idx
    ON onboarding_migration_log (request_id);
CREATE INDEX IF NOT EXISTS onboarding_migration_log_user_idx
    ON onboarding_migration_log (user_id, id);

CREATE OR REPLACE FUNCTION onboarding_migration_log_is_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'onboarding_migration_log is append-only (% refused)', TG_OP;
END;
$$;

DROP TRIGGER IF EXISTS onboarding_migration_log_append_only ON onboarding_migration_log;
CREATE TRIGGER onboarding_migration_log_append_only
    BEFORE UPDATE OR DELETE ON onboarding_migration_log
    FOR EACH ROW EXECUTE FUNCTION onboarding_migration_log_is_append_only();

DROP TRIGGER IF EXISTS onboarding_migration_log_no_truncate ON onboarding_migration_log;
CREATE TRIGGER onboarding_migration_log_no_truncate
    BEFORE TRUNCATE ON onboarding_migration_log
    FOR EACH STATEMENT EXECUTE FUNCTION onboarding_migration_log_is_append_only();
