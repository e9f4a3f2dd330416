-- A user's latest effect: the newest answer that migrated or rolled back (not a dry run, not an
-- answer repeated for a request already done), with the outcome event it published.
SELECT outcome, detail -> 'outcome' AS event
FROM onboarding_migration_log
WHERE user_id = $1 AND outcome IN ('migrated', 'rolled_back')
  AND NOT coalesce((detail -> 'outcome' ->> 'dry_run')::boolean, false)
  AND NOT coalesce((detail -> 'outcome' ->> 'already_done')::boolean, false)
ORDER BY id DESC
LIMIT 1
