-- Per error code among failed answers (not dry runs): how many users, and the latest few.
SELECT error_code,
       count(DISTINCT user_id) AS users,
       (array_agg(user_id ORDER BY id DESC))[1:$1] AS sample
FROM onboarding_migration_log
WHERE outcome = 'failed'
  AND NOT coalesce((detail -> 'outcome' ->> 'dry_run')::boolean, false)
GROUP BY error_code
ORDER BY error_code
