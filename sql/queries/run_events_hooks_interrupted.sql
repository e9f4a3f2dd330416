-- Hooks of app id $1 claimed before $2 and never ended (their worker stopped or died mid-hook):
-- interrupted, not started again.
UPDATE run_events SET hook_state = 'interrupted', hook_finished_at = $3,
       hook_detail = coalesce(hook_detail, '') || ' (its worker stopped before it ended)'
WHERE app_id = $1 AND hook_state = 'running' AND hook_started_at < $2
RETURNING event_id, kind
