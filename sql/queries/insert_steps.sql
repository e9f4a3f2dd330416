-- The 24 step rows of each new session, spelt out here from one row per session: its id, its
-- steps' statuses as one ASCII letter each ('c' completed, 's' skipped, 'p' pending, in step
-- order) and the time its completed steps were completed. The catalog ($4-$6: number, key,
-- required) comes from agents/core/catalog.py. Sending 1 row per session instead of 24 takes
-- most of the per-user work of writing steps off the worker.
--
-- The letters come as bytea and are read with get_byte (99 'c', 115 's'): substr of text walks
-- the string in the database's encoding for every step row, and that was a fifth of the
-- statement's PostgreSQL time (about 6-10 µs a user, measured with 500 sessions a statement).
INSERT INTO onboarding_steps (session_id, step_number, step_key, status, required, completed_at)
SELECT s.session_id,
       c.step_number,
       c.step_key,
       CASE get_byte(s.codes, c.step_number - 1)
           WHEN 99 THEN 'completed' WHEN 115 THEN 'skipped' ELSE 'pending' END,
       c.required,
       CASE WHEN get_byte(s.codes, c.step_number - 1) = 99 THEN s.completed_at END
FROM unnest($1::uuid[], $2::bytea[], $3::timestamptz[]) AS s (session_id, codes, completed_at)
CROSS JOIN unnest($4::smallint[], $5::text[], $6::boolean[]) AS c (step_number, step_key, required)
