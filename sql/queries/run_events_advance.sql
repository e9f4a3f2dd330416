-- The next control record of app id $1 to turn into an event is $2.
UPDATE run_events_position SET control_offset = $2 WHERE app_id = $1 AND control_offset < $2
