-- What each worker reports of run control: whether it has applied the pause (so an operator
-- sees every worker stopped, not only the topic saying so) and its re-validation sampler's
-- findings (summed over the workers by `stats` and the dashboard).
ALTER TABLE worker_status ADD COLUMN IF NOT EXISTS paused boolean NOT NULL DEFAULT false;
ALTER TABLE worker_status ADD COLUMN IF NOT EXISTS revalidation jsonb;
