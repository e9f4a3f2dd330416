-- Users migrated at or after audit log id $1 (a random recent id), in id order: one
-- primary-key range, whatever the log's size or load.
SELECT user_id
FROM onboarding_migration_log
WHERE id >= $1 AND outcome = 'migrated' AND action = 'migrate'
ORDER BY id
LIMIT $2
