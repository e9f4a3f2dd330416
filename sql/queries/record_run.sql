-- A run is created by its first enqueue and added to by the next ones ($4: the selection made).
INSERT INTO migration_runs AS r
    (run_id, created_at, created_by, updated_at, migrate_requested, rollback_requested, selections)
VALUES ($1, $2, $3, $2,
        CASE WHEN $5 = 'migrate' THEN $6 ELSE 0 END,
        CASE WHEN $5 = 'rollback' THEN $6 ELSE 0 END,
        jsonb_build_array($4::jsonb))
ON CONFLICT (run_id) DO UPDATE SET
    updated_at = EXCLUDED.updated_at,
    migrate_requested = r.migrate_requested + EXCLUDED.migrate_requested,
    rollback_requested = r.rollback_requested + EXCLUDED.rollback_requested,
    selections = r.selections || EXCLUDED.selections
