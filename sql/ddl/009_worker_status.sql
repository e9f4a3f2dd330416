-- Each worker's latest report of itself, written every few seconds: which request partitions it
-- owns, their lag, its memory. The dashboard and `GET workers` read every worker from here (a
-- worker cannot see the others' assignments); a row older than a few reports is a worker gone.
CREATE TABLE IF NOT EXISTS worker_status (
    app_id      text NOT NULL,
    worker      text NOT NULL,         -- host:pid
    partitions  integer[] NOT NULL,
    lag         jsonb NOT NULL,        -- {"partition": records fetched or waiting, unanswered}
    in_flight   integer NOT NULL,      -- records in the batches being applied now
    rss_bytes   bigint,
    started_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (app_id, worker)
);
