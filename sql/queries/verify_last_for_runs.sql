-- Each run's latest finished verification (`runs show`, `GET runs/{id}`).
SELECT DISTINCT ON (run_id) run_id, verify_id, finished_at, ok, checked, mismatched, by_check
FROM verifications
WHERE run_id = ANY($1::text[]) AND finished_at IS NOT NULL
ORDER BY run_id, finished_at DESC
