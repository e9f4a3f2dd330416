-- answer audit: save round (agents/stores/answer_audit.py)
UPDATE answer_audit
SET audited_to = $3, answers_read = $4, answered = $5, updated_at = $6
WHERE app_id = $1
AND partition = $2
AND audited_to = $7
AND answers_read = $8
