-- The user of a session picked uniformly among all sessions, reading at most 100 pages however
-- large the table is.
--
-- Session ids grow with time (agents/core/name_uuids.py), so "the first session at or after a
-- random id" no longer picks uniformly: almost every random id sorts after all of them. Instead,
-- 100 random tuple positions (page, line) are looked up by TID, lines up to the most a page can
-- hold (so that no session is out of reach, whatever the table's statistics say), and one of
-- those that hold a session is taken at random: every session is as likely to be among them.
-- NULL when none does (the caller tries again).
WITH shape AS (
    SELECT pg_relation_size('onboarding_sessions') / current_setting('block_size')::int AS pages,
           -- MaxHeapTuplesPerPage: a page header of 24 bytes, 4 per line and 24 per tuple
           (current_setting('block_size')::int - 24) / 28 AS lines
)
SELECT user_id
FROM onboarding_sessions
WHERE ctid = ANY (ARRAY(
    SELECT format('(%s,%s)', floor(random() * pages), 1 + floor(random() * lines))::tid
    FROM shape, generate_series(1, 100)
))
ORDER BY random()
LIMIT 1
