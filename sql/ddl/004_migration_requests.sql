-- The idempotency ledger: one row per request_id whose effect succeeded. A request_id found here
-- is not applied again. The Kafka position of the record that succeeded tells a redelivery of
-- that same record (answer with the stored outcome, unchanged) from a duplicate (already_done).
CREATE TABLE IF NOT EXISTS migration_requests (
    request_id        uuid PRIMARY KEY,
    user_id           text NOT NULL,
    action            text NOT NULL CHECK (action IN ('migrate', 'rollback')),
    outcome           jsonb NOT NULL,   -- the outcome event as first emitted
    source_partition  integer,
    source_offset     bigint,
    processed_at      timestamptz NOT NULL
);

CREATE INDEX IF NOT EXISTS migration_requests_user_idx ON migration_requests (user_id);
