-- Per error code: the users not migrated now whose migrate request failed with it (not as a dry
-- run), and the latest few of them, each once. Users migrated since (a replay cured them) are
-- not failures any more; summed over the codes a retry does not cure, this is the headline's
-- "failed until their data is fixed". The partial index of DDL 006 finds the failures.
WITH failed AS (
    SELECT f.error_code, f.user_id, max(f.id) AS last_id
    FROM onboarding_migration_log AS f
    JOIN legacy_onboarding_status AS l USING (user_id)
    WHERE f.outcome = 'failed' AND f.action = 'migrate' AND l.status <> 'migrated'
      AND NOT coalesce((f.detail -> 'outcome' ->> 'dry_run')::boolean, false)
    GROUP BY f.error_code, f.user_id
)
SELECT error_code,
       count(*) AS users,
       (array_agg(user_id ORDER BY last_id DESC))[1:$1] AS sample
FROM failed
GROUP BY error_code
ORDER BY error_code
