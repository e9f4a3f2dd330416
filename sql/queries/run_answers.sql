-- The answers of the runs $1, grouped the way a run's figures are told ($2: start of the rate
-- window). Answered from the run index alone.
SELECT run_id, action, outcome, error_code,
       count(*) AS count,
       count(*) FILTER (WHERE created_at >= $2) AS recent,
       min(created_at) AS first_at,
       max(created_at) AS last_at
FROM onboarding_migration_log
WHERE run_id = ANY($1::text[])
GROUP BY run_id, action, outcome, error_code
