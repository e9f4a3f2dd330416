SELECT user_id, workspace_id, status, current_step, completed_steps, answers, updated_at
FROM legacy_onboarding_status
WHERE user_id = $1
