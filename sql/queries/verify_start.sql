-- A new verification ($1 scope, $2 run id or NULL, $3 now).
INSERT INTO verifications (scope, run_id, started_at, updated_at)
VALUES ($1, $2, $3, $3)
RETURNING verify_id
