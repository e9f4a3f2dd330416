-- The latest runs and their request counts (which may still make started or finished events).
SELECT run_id, migrate_requested + rollback_requested AS requested
FROM migration_runs
ORDER BY updated_at DESC, run_id
LIMIT $1
