-- The workers of an app id that reported within $2 seconds, with the age of their report.
SELECT worker, partitions, lag, in_flight, rss_bytes, started_at, paused, revalidation,
       extract(epoch FROM now() - updated_at)::float8 AS age_s
FROM worker_status
WHERE app_id = $1 AND updated_at > now() - make_interval(secs => $2)
ORDER BY worker
