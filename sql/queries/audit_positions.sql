-- answer audit: positions (agents/stores/answer_audit.py)
SELECT partition, audited_to, updated_at
FROM answer_audit
WHERE app_id = $1
ORDER BY partition
