-- A page of users waiting for their Redis mirror. SKIP LOCKED: two workers repair different
-- pages. The caller then locks their legacy rows (as a batch does while it writes Redis), so a
-- repair reads PostgreSQL only after any batch touching the same users has committed.
SELECT user_id
FROM redis_mirror_pending
ORDER BY user_id
LIMIT $1
FOR UPDATE SKIP LOCKED
