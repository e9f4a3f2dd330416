-- answer audit: unanswered (agents/stores/answer_audit.py)
SELECT partition, request_offset
FROM answer_findings
WHERE app_id = $1
AND kind = $2
AND closed_at IS NULL
ORDER BY partition, request_offset
