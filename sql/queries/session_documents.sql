-- Sessions with their steps, the shape mirrored to Redis, for the given users.
SELECT s.session_id, s.user_id, s.workspace_id, s.status, s.current_step,
       s.completion_percentage, s.steps_completed, s.created_at, s.updated_at,
       jsonb_agg(
           jsonb_build_object(
               'step_number', st.step_number, 'step_key', st.step_key,
               'status', st.status, 'required', st.required, 'completed_at', st.completed_at
           ) ORDER BY st.step_number
       ) AS steps
FROM onboarding_sessions AS s
-- Every step number, spelt out (the table allows no other): the primary key then finds each row,
-- so the planner probes it per session even when its statistics, taken while the table was
-- nearly empty, put hundreds of thousands of step rows behind each session id (it chose to read
-- all of them otherwise, 70 ms a call at 100,000 sessions even when planned for the call).
JOIN onboarding_steps AS st
    ON st.session_id = s.session_id
    AND st.step_number = ANY ('{1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24}')
WHERE s.user_id = ANY($1::text[])
GROUP BY s.session_id
