-- The legacy rows of a batch's users, locked in user_id order (no deadlock between two batches).
SELECT user_id, workspace_id, status, current_step, completed_steps, answers, updated_at
FROM legacy_onboarding_status
WHERE user_id = ANY($1::text[])
ORDER BY user_id
FOR UPDATE
