SELECT count(*) FROM redis_mirror_pending
