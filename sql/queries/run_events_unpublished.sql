-- Events of app id $1 recorded and not yet published, in order.
SELECT event_id, event FROM run_events
WHERE app_id = $1 AND published_at IS NULL
ORDER BY seq
LIMIT $2
