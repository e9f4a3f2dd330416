-- Claim event $2's hook (app id $1) before starting it: one claim per event, ever.
UPDATE run_events SET hook_state = 'running', hook_started_at = $3, hook_detail = $4
WHERE app_id = $1 AND event_id = $2 AND hook_state = 'pending'
RETURNING event
