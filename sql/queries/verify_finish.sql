UPDATE verifications SET finished_at = $2, updated_at = $2, ok = (mismatched = 0)
WHERE verify_id = $1
