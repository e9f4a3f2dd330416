-- answer audit: record findings (agents/stores/answer_audit.py)
INSERT INTO answer_findings (app_id, partition, request_offset, kind, extra_answers, request_id, user_id, found_at, found_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (app_id, partition, request_offset, kind)
DO UPDATE
SET extra_answers = answer_findings.extra_answers + EXCLUDED.extra_answers, closed_at = NULL, closed_by = NULL
WHERE EXCLUDED.kind = 'duplicated'
