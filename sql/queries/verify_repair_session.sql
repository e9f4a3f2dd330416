-- Repair: a session's figures as its snapshot plans them ($1 session id).
UPDATE onboarding_sessions
SET workspace_id = $2, status = $3, current_step = $4, completion_percentage = $5,
    steps_completed = $6, updated_at = $7
WHERE session_id = $1
