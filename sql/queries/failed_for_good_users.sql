-- Legacy users not migrated now whose migrate request failed (not as a dry run) with a code that
-- only fixing their data cures ($1): the users progress counts as failed for good. "enqueue
-- everyone not yet migrated" leaves them out unless told otherwise: sent again unchanged they
-- fail again, and trip the failure budget for every later wave (replay them once fixed).
-- The partial index of DDL 006 finds the failures without reading the whole audit log.
SELECT DISTINCT f.user_id
FROM onboarding_migration_log AS f
JOIN legacy_onboarding_status AS l USING (user_id)
WHERE f.outcome = 'failed' AND f.action = 'migrate' AND l.status <> 'migrated'
  AND f.error_code = ANY($1::text[])
  AND NOT coalesce((f.detail -> 'outcome' ->> 'dry_run')::boolean, false)
