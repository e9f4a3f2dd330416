-- answer audit: close repaired (agents/stores/answer_audit.py)
UPDATE answer_findings
SET closed_at = $4, closed_by = 'replay answered'
WHERE app_id = $1
AND partition = $2
AND request_offset = $3
AND kind = 'unanswered'
AND closed_at IS NULL
