-- The latest verification that did not finish: what `verify --resume` goes on with.
SELECT verify_id, scope, run_id, started_at, position, checked, mismatched, by_check, elapsed_s
FROM verifications
WHERE finished_at IS NULL
ORDER BY verify_id DESC
LIMIT 1
