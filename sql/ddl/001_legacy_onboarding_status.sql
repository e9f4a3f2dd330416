-- The legacy system's table (contract §5). It belongs to the legacy system: this file creates it
-- only for development, tests and demos. The service reads it and sets status = 'migrated'.
CREATE TABLE IF NOT EXISTS legacy_onboarding_status (
    user_id          text PRIMARY KEY,
    workspace_id     text,
    status           text NOT NULL,        -- not_started | in_progress | completed | migrated
    current_step     text,                 -- a legacy step name, or NULL
    completed_steps  text[] NOT NULL DEFAULT '{}',
    answers          jsonb NOT NULL DEFAULT '{}'::jsonb,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- enqueue pages through the users not yet migrated in user_id order (keyset pagination).
CREATE INDEX IF NOT EXISTS legacy_onboarding_status_not_migrated_idx
    ON legacy_onboarding_status (user_id) WHERE status <> 'migrated';
