-- Runs: named, staged rollouts (`migrator enqueue --run NAME --percent P`). A run is what its
-- requests say it is: the audit log carries each answer's run, so the run's counts are the
-- answers PostgreSQL holds; this table keeps what the log cannot know (how many requests were
-- published, by whom, when, which selection), added to by every enqueue into the run.
ALTER TABLE onboarding_migration_log ADD COLUMN IF NOT EXISTS run_id text;

CREATE INDEX IF NOT EXISTS onboarding_migration_log_run_idx
    ON onboarding_migration_log (run_id, created_at) INCLUDE (action, outcome, error_code, user_id)
    WHERE run_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS migration_runs (
    run_id               text PRIMARY KEY,
    created_at           timestamptz NOT NULL,
    created_by           text NOT NULL,
    updated_at           timestamptz NOT NULL,
    migrate_requested    bigint NOT NULL DEFAULT 0,   -- migrate requests published in the run
    rollback_requested   bigint NOT NULL DEFAULT 0,   -- rollback requests published for it
    selections           jsonb NOT NULL DEFAULT '[]'::jsonb  -- each enqueue: what it selected
);
