-- Put legacy rows back exactly as snapshotted (every column), also if the row was deleted since;
-- the restored rows are returned so that the caller verifies them against the snapshot hash.
INSERT INTO legacy_onboarding_status AS l
    (user_id, workspace_id, status, current_step, completed_steps, answers, updated_at)
SELECT r.user_id, r.workspace_id, r.status, r.current_step, r.completed_steps, r.answers,
       r.updated_at
FROM jsonb_to_recordset($1::jsonb) AS r(
    user_id text, workspace_id text, status text, current_step text, completed_steps text[],
    answers jsonb, updated_at timestamptz
)
ON CONFLICT (user_id) DO UPDATE SET
    workspace_id = EXCLUDED.workspace_id,
    status = EXCLUDED.status,
    current_step = EXCLUDED.current_step,
    completed_steps = EXCLUDED.completed_steps,
    answers = EXCLUDED.answers,
    updated_at = EXCLUDED.updated_at
RETURNING l.user_id, l.workspace_id, l.status, l.current_step, l.completed_steps, l.answers,
          l.updated_at
