-- Record a derived event (once: the id comes from its cause); $7: its hook's first state.
INSERT INTO run_events (app_id, event_id, kind, event, happened_at, recorded_at, hook_state)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (app_id, event_id) DO NOTHING
