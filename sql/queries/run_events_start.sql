-- Run events' position of app id $1, created at the control topic's end $3 and time $2 the
-- first time (earlier control records and runs make no events).
WITH made AS (
    INSERT INTO run_events_position (app_id, since, control_offset)
    VALUES ($1, $2, $3)
    ON CONFLICT (app_id) DO NOTHING
    RETURNING since, control_offset
)
SELECT since, control_offset FROM made
UNION ALL
SELECT since, control_offset FROM run_events_position WHERE app_id = $1
LIMIT 1
