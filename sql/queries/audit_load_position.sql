-- answer audit: load position (agents/stores/answer_audit.py)
SELECT floor, audited_to, answers_read, answered
FROM answer_audit
WHERE app_id = $1
AND partition = $2
