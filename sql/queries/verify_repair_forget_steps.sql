-- Repair: a session's steps and manifests go, to be written again from its snapshot.
WITH gone AS (DELETE FROM onboarding_steps WHERE session_id = $1)
DELETE FROM business_context_manifests WHERE session_id = $1
