-- Legacy users not migrated now who were rolled back (not as a dry run): a cohort an operator
-- took back, which "enqueue everyone not yet migrated" leaves out unless told otherwise.
-- The partial index of DDL 008 finds the rollbacks without reading the whole audit log.
SELECT DISTINCT r.user_id
FROM onboarding_migration_log AS r
JOIN legacy_onboarding_status AS l USING (user_id)
WHERE r.outcome = 'rolled_back' AND l.status <> 'migrated'
  AND NOT coalesce((r.detail -> 'outcome' ->> 'dry_run')::boolean, false)
