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
JOIN onboarding_steps AS st USING (session_id)
WHERE s.user_id = ANY($1::text[])
GROUP BY s.session_id
