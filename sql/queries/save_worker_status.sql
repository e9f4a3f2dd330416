INSERT INTO worker_status
    (app_id, worker, partitions, lag, in_flight, rss_bytes, started_at, updated_at, paused,
     revalidation)
VALUES ($1, $2, $3, $4, $5, $6, $7, now(), $8, $9)
ON CONFLICT (app_id, worker) DO UPDATE SET
    partitions = EXCLUDED.partitions, lag = EXCLUDED.lag, in_flight = EXCLUDED.in_flight,
    rss_bytes = EXCLUDED.rss_bytes,
    updated_at = EXCLUDED.updated_at,
    paused = EXCLUDED.paused,
    revalidation = EXCLUDED.revalidation
