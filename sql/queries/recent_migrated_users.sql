-- Users migrated among the latest $1 answers of the audit log, $2 of them at random: a range
-- of the primary key, whatever the log's size.
SELECT user_id FROM (
    SELECT DISTINCT user_id
    FROM onboarding_migration_log
    WHERE id > (SELECT coalesce(max(id), 0) - $1 FROM onboarding_migration_log)
      AND outcome = 'migrated' AND action = 'migrate'
) AS recent
ORDER BY random()
LIMIT $2
