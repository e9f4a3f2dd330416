-- Run events (topic user-migration-runs): the outbox the publishing worker writes before it
-- publishes, so that each event is published once whichever worker derived it and whatever
-- crashed, and the state of each event's hook, so that a hook never runs twice.
CREATE TABLE IF NOT EXISTS run_events (
    app_id            text NOT NULL,
    event_id          text NOT NULL,               -- derived from the cause (agents.core.run_events)
    seq               bigserial,                   -- the order they are published in
    kind              text NOT NULL,
    event             jsonb NOT NULL,              -- the record's value
    happened_at       timestamptz NOT NULL,
    recorded_at       timestamptz NOT NULL,
    published_at      timestamptz,                 -- NULL until Kafka committed it
    -- NULL: no hook (none configured on the publishing worker); pending, running (claimed: never
    -- started again), done, failed, timeout, missing (no executable), interrupted (its worker
    -- stopped mid-hook)
    hook_state        text,
    hook_detail       text,
    hook_started_at   timestamptz,
    hook_finished_at  timestamptz,
    PRIMARY KEY (app_id, event_id)
);

CREATE INDEX IF NOT EXISTS run_events_unpublished_idx
    ON run_events (app_id, seq) WHERE published_at IS NULL;
CREATE INDEX IF NOT EXISTS run_events_hook_pending_idx
    ON run_events (app_id, seq) WHERE hook_state IN ('pending', 'running');

-- Where the publishing worker is: the next control record to turn into an event, and since when
-- run events are on (runs that started or finished before make none: no replay of history).
CREATE TABLE IF NOT EXISTS run_events_position (
    app_id          text PRIMARY KEY,
    since           timestamptz NOT NULL,
    control_offset  bigint NOT NULL
);
