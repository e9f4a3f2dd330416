-- Steps and manifests go with their session (ON DELETE CASCADE).
DELETE FROM onboarding_sessions WHERE session_id = ANY($1::uuid[])
