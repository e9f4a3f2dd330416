-- Event $2's hook (app id $1) ended: state $3, one line $4, at $5.
UPDATE run_events SET hook_state = $3, hook_detail = $4, hook_finished_at = $5
WHERE app_id = $1 AND event_id = $2 AND hook_state = 'running'
