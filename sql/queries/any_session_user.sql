-- The user of a session picked nearly uniformly among all sessions, reading at most 32 pages
-- however large the table is.
--
-- Session ids grow with time (agents/core/name_uuids.py), so "the first session at or after a
-- random id" no longer picks uniformly: almost every random id sorts after all of them. Instead,
-- 32 random tuple positions (page, line) within the table's pages and the lines a page holds
-- (from the table's statistics, with a margin; 64 before it has any) are looked up by TID, and
-- one of those that hold a session is taken at random: every session within that many lines of
-- its page's start is as likely to be among them (sessions are rows of one shape, rarely
-- updated, so that is nearly all of them). NULL when none does (the caller tries again).
WITH shape AS (
    SELECT pg_relation_size(c.oid) / current_setting('block_size')::int AS pages,
           CASE WHEN c.relpages > 0 AND c.reltuples > 0
                THEN ceil(c.reltuples / c.relpages * 1.25)::int ELSE 64 END AS lines
    FROM pg_class AS c
    WHERE c.oid = 'onboarding_sessions'::regclass
)
SELECT user_id
FROM onboarding_sessions
WHERE ctid = ANY (ARRAY(
    SELECT format('(%s,%s)', floor(random() * pages), 1 + floor(random() * lines))::tid
    FROM shape, generate_series(1, 32)
))
ORDER BY random()
LIMIT 1
