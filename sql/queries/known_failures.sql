-- Of the users given ($1), those whose migrate request already failed (not as a dry run) with a
-- code that only fixing their data cures ($2): a batch asks before recording its own answers,
-- so a failure found here was reported before. The failure budget judges only new failures:
-- a user sent again unchanged fails again, and that repeat says nothing about the rollout.
-- The partial index of DDL 006 (user_id, failed migrates) answers it.
SELECT DISTINCT user_id
FROM onboarding_migration_log
WHERE user_id = ANY($1::text[])
  AND outcome = 'failed' AND action = 'migrate'
  AND error_code = ANY($2::text[])
  AND NOT coalesce((detail -> 'outcome' ->> 'dry_run')::boolean, false)
