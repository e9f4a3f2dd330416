-- The new session system (contract §7). PostgreSQL is the source of truth; Redis mirrors it.
CREATE TABLE IF NOT EXISTS onboarding_sessions (
    session_id             uuid PRIMARY KEY,
    user_id                text NOT NULL UNIQUE,
    workspace_id           text,
    status                 text NOT NULL
                           CHECK (status IN ('not_started', 'in_progress', 'completed')),
    current_step           smallint CHECK (current_step BETWEEN 1 AND 24),
    completion_percentage  numeric(5, 2) NOT NULL CHECK (completion_percentage BETWEEN 0 AND 100),
    steps_completed        smallint NOT NULL CHECK (steps_completed BETWEEN 0 AND 24),
    legacy_snapshot        jsonb NOT NULL,   -- the legacy row exactly as it was; rollback restores it
    legacy_sha256          text NOT NULL CHECK (legacy_sha256 ~ '^[0-9a-f]{64}$'),
    request_id             uuid NOT NULL,    -- the request that created the session
    created_at             timestamptz NOT NULL,
    updated_at             timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS onboarding_steps (
    session_id    uuid NOT NULL REFERENCES onboarding_sessions (session_id) ON DELETE CASCADE,
    step_number   smallint NOT NULL CHECK (step_number BETWEEN 1 AND 24),
    step_key      text NOT NULL,
    status        text NOT NULL CHECK (status IN ('completed', 'skipped', 'pending')),
    required      boolean NOT NULL,
    completed_at  timestamptz,
    PRIMARY KEY (session_id, step_number)
);

CREATE TABLE IF NOT EXISTS business_context_manifests (
    session_id      uuid NOT NULL REFERENCES onboarding_sessions (session_id) ON DELETE CASCADE,
    user_id         text NOT NULL,
    version         integer NOT NULL CHECK (version >= 1),
    manifest        jsonb NOT NULL,
    checksum        text NOT NULL CHECK (checksum ~ '^[0-9a-f]{64}$'),
    token_estimate  integer NOT NULL CHECK (token_estimate >= 0),
    created_at      timestamptz NOT NULL,
    UNIQUE (session_id, version)
);

CREATE INDEX IF NOT EXISTS business_context_manifests_user_idx
    ON business_context_manifests (user_id);
