DELETE FROM redis_mirror_pending WHERE user_id = ANY($1::text[])
