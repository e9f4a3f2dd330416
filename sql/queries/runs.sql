-- The runs, latest first ($1: only these run ids, or NULL for the latest $2).
SELECT run_id, created_at, created_by, updated_at, migrate_requested, rollback_requested,
       selections
FROM migration_runs
WHERE $1::text[] IS NULL OR run_id = ANY($1::text[])
ORDER BY updated_at DESC, run_id
LIMIT $2
