INSERT INTO redis_mirror_pending (user_id, since)
SELECT unnest($1::text[]), $2
ON CONFLICT (user_id) DO NOTHING
