-- Whether the run $1 was recorded.
SELECT EXISTS (SELECT 1 FROM migration_runs WHERE run_id = $1)
