-- A run's report: each user whose latest answer in the run ($1) is a failure, with its code,
-- message and whether trying again unchanged may succeed.
SELECT DISTINCT ON (user_id)
       user_id, action, outcome, error_code,
       detail -> 'outcome' -> 'error' ->> 'message' AS message,
       coalesce((detail -> 'outcome' -> 'error' ->> 'retryable')::boolean, false) AS retryable,
       request_id, created_at
FROM onboarding_migration_log
WHERE run_id = $1
ORDER BY user_id, id DESC
