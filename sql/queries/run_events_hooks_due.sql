-- Published events of app id $1 whose hook has not been started yet, in order.
SELECT event_id FROM run_events
WHERE app_id = $1 AND hook_state = 'pending' AND published_at IS NOT NULL
ORDER BY seq
LIMIT $2
