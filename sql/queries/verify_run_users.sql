-- The users a run touched (every answer of its requests), in user_id order: `verify --run`.
SELECT DISTINCT user_id FROM onboarding_migration_log WHERE run_id = $1 ORDER BY user_id
