-- The ids of the run-derived events (started, finished) of app id $1 recorded so far.
SELECT event_id FROM run_events WHERE app_id = $1 AND kind IN ('started', 'finished')
