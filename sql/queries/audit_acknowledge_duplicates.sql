-- answer audit: acknowledge duplicates (agents/stores/answer_audit.py)
UPDATE answer_findings
SET closed_at = $2, closed_by = $3
WHERE app_id = $1
AND kind = 'duplicated'
AND closed_at IS NULL
