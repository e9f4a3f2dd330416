-- The users who hold, now, a session created by a migrate request of run $1: what the run
-- migrated and nothing since took back (what `rollback --run` rolls back).
SELECT s.user_id
FROM onboarding_sessions AS s
JOIN onboarding_migration_log AS l ON l.request_id = s.request_id
WHERE l.run_id = $1 AND l.action = 'migrate' AND l.outcome = 'migrated'
ORDER BY s.user_id
