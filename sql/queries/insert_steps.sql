-- The 24 step rows of each new session, spelt out here from one row per session: its id, its
-- steps' statuses as one letter each ('c' completed, 's' skipped, 'p' pending, in step order)
-- and the time its completed steps were completed. The catalog ($4-$6: number, key, required)
-- comes from agents/core/catalog.py. Sending 1 row per session instead of 24 takes most of the
-- per-user work of writing steps off the worker.
INSERT INTO onboarding_steps (session_id, step_number, step_key, status, required, completed_at)
SELECT s.session_id,
       c.step_number,
       c.step_key,
       CASE substr(s.codes, c.step_number, 1)
           WHEN 'c' THEN 'completed' WHEN 's' THEN 'skipped' ELSE 'pending' END,
       c.required,
       CASE WHEN substr(s.codes, c.step_number, 1) = 'c' THEN s.completed_at END
FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) AS s (session_id, codes, completed_at)
CROSS JOIN unnest($4::smallint[], $5::text[], $6::boolean[]) AS c (step_number, step_key, required)
