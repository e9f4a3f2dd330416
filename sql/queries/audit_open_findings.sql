-- answer audit: open findings (agents/stores/answer_audit.py)
SELECT partition, request_offset, kind, extra_answers, request_id, user_id, found_at, found_by
FROM answer_findings
WHERE app_id = $1
AND closed_at IS NULL
ORDER BY partition, request_offset, kind
LIMIT $2
