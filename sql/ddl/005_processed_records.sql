-- Every request record an app id (a consumer group) has answered, by its Kafka position, in the
-- same transaction as the record's effects. A record seen again (a batch redone after a crash, a rebalance, a
-- fenced producer) is answered from here, byte for byte, instead of being decided a second time
-- against rows that already carry later requests' effects: that keeps per-user order and makes
-- a redelivered dry run or failure say what it said the first time. The digest tells a record
-- from another one at the same position (a topic deleted and created again).
CREATE TABLE IF NOT EXISTS processed_records (
    app_id            text NOT NULL,
    source_partition  integer NOT NULL,
    source_offset     bigint NOT NULL,
    record_digest     bytea NOT NULL,
    outcome           jsonb,            -- the outcome event as first emitted; NULL: dead-lettered
    processed_at      timestamptz NOT NULL,
    PRIMARY KEY (app_id, source_partition, source_offset)
);

-- The live counters (contract §9), one row per app id and request partition, advanced in the
-- batch's transaction for the records answered for the first time: what PostgreSQL committed is
-- what was counted, whatever happens to the worker afterwards.
CREATE TABLE IF NOT EXISTS partition_counters (
    app_id            text NOT NULL,
    source_partition  integer NOT NULL,
    totals            jsonb NOT NULL,
    updated_at        timestamptz NOT NULL,
    PRIMARY KEY (app_id, source_partition)
);

-- Users whose Redis mirror could not be written after their change committed (Redis down). The
-- worker rewrites them from PostgreSQL as soon as Redis answers, then deletes the row.
CREATE TABLE IF NOT EXISTS redis_mirror_pending (
    user_id  text PRIMARY KEY,
    since    timestamptz NOT NULL
);
