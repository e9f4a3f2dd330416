-- answer audit: start position (agents/stores/answer_audit.py)
INSERT INTO answer_audit (app_id, partition, floor, audited_to, answers_read, answered, updated_at)
VALUES ($1, $2, $3, $3, $4, '[]'::jsonb, now())
ON CONFLICT (app_id, partition) DO NOTHING
